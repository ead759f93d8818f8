//go:build unix

package peek

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// Pending reports whether bytes from the peer wait, unread, in the
// kernel's receive buffer of c: the start of a request the server has not
// read yet. It does not block and does not consume anything. It uses
// RawConn.Control, not RawConn.Read, because the server's goroutine holds
// the conn's read lock while it waits for the next request.
func Pending(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	pending := false
	_ = rc.Control(func(fd uintptr) {
		var b [1]byte
		// n > 0 means the syscall succeeded; an error can only come from
		// decoding the source address, which a stream socket leaves empty.
		n, _, _ := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		pending = n > 0
	})
	return pending
}
