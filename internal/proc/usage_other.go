//go:build !linux

package proc

import (
	"context"
	"net/netip"
	"time"
)

// Gone reports false: outside Linux nothing is known of pid.
func Gone(pid int) bool { return false }

// ReadUsage returns ErrNotSupported.
func ReadUsage(pid int) (Usage, error) { return Usage{}, ErrNotSupported }

// Cmdline returns ErrNotSupported.
func Cmdline(pid int) ([]string, error) { return nil, ErrNotSupported }

// Descendants returns nothing.
func Descendants(pid int) []int { return nil }

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
