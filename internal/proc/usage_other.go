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

// TCPListen is the state of a listening socket in /proc/net/tcp.
const TCPListen = 0x0A

// TCPSocket is a line of /proc/net/tcp.
type TCPSocket struct {
	Local, Remote netip.AddrPort
	State         int
	Inode         uint64
}

// TCPSockets returns ErrNotSupported.
func TCPSockets() ([]TCPSocket, error) { return nil, ErrNotSupported }

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
