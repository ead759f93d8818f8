//go:build !linux

package proc

import (
	"context"
	"net/netip"
	"time"
)

// Gone reports false: outside Linux nothing is known of pid.
func Gone(pid int) bool { return false }

// Usage is what a process holds.
type Usage struct {
	FDs       int
	SocketFDs int
	RSSKB     int
	Threads   int
}

// OtherFDs is the number of descriptors that are not sockets.
func (u Usage) OtherFDs() int { return u.FDs - u.SocketFDs }

// ReadUsage returns ErrNotSupported.
func ReadUsage(pid int) (Usage, error) { return Usage{}, ErrNotSupported }

// Cmdline returns ErrNotSupported.
func Cmdline(pid int) ([]string, error) { return nil, ErrNotSupported }

// Descendants returns nothing.
func Descendants(pid int) []int { return nil }

// TCP states, as bits of the mask TCPSockets takes.
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
	Local, Remote netip.AddrPort
	State         int
	Inode         uint64
}

// TCPSockets returns ErrNotSupported.
func TCPSockets(states uint32) ([]TCPSocket, error) { return nil, ErrNotSupported }

// TCPLookup returns ErrNotSupported.
func TCPLookup(local, remote netip.AddrPort) (TCPSocket, bool, error) {
	return TCPSocket{}, false, ErrNotSupported
}

// SocketInodes returns ErrNotSupported.
func SocketInodes(pid int) (map[uint64]bool, error) { return nil, ErrNotSupported }

// ExitWatch waits for a process to exit.
type ExitWatch struct{}

// WatchExit returns ErrNotSupported.
func WatchExit(pid int) (*ExitWatch, error) { return nil, ErrNotSupported }

// Wait returns ErrNotSupported.
func (w *ExitWatch) Wait(ctx context.Context) (time.Time, error) { return time.Time{}, ErrNotSupported }

// Close does nothing.
func (w *ExitWatch) Close() {}
