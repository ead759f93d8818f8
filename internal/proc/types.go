package proc

import "net/netip"

// The types and constants below are the same on every platform; outside
// Linux the functions that fill them return ErrNotSupported.

// Usage is what a process holds: its file descriptors (the sockets among
// them counted apart), its resident memory and its threads.
type Usage struct {
	FDs       int // open file descriptors
	SocketFDs int // those that are sockets
	RSSKB     int // resident set size, KiB (VmRSS)
	Threads   int
}

// OtherFDs is the number of descriptors that are not sockets: files,
// pipes, eventfds. Unlike sockets, their number does not follow the load.
func (u Usage) OtherFDs() int { return u.FDs - u.SocketFDs }

// TCP states (include/net/tcp_states.h), as bits of the mask TCPSockets
// takes: 1<<TCPEstablished | 1<<TCPCloseWait.
const (
	TCPEstablished = 1
	TCPSynSent     = 2
	TCPSynRecv     = 3
	TCPFinWait1    = 4
	TCPFinWait2    = 5
	TCPTimeWait    = 6
	TCPClose       = 7
	TCPCloseWait   = 8
	TCPLastAck     = 9
	TCPListen      = 10
	TCPClosing     = 11
)

// TCPSocket is a TCP socket of the kernel's tables.
type TCPSocket struct {
	Local, Remote netip.AddrPort // IPv4-mapped IPv6 addresses unmapped
	State         int            // TCPEstablished, TCPListen, ...
	Inode         uint64         // 0 once no process holds the socket
}
