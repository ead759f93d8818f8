//go:build !linux

package proc

import "errors"

// ErrNotSupported is returned outside Linux.
var ErrNotSupported = errors.New("proc: not supported on this platform")

// Stat is what the project reads of /proc/<pid>/stat.
type Stat struct {
	PID   int
	State byte
	PPID  int
}

// ReadStat returns ErrNotSupported.
func ReadStat(pid int) (Stat, error) { return Stat{}, ErrNotSupported }

// ParentPID returns ErrNotSupported.
func ParentPID(pid int) (int, error) { return 0, ErrNotSupported }

// PIDs returns nothing.
func PIDs() []int { return nil }

// Children returns nothing.
func Children(pid int) []int { return nil }

// Environ returns ErrNotSupported.
func Environ(pid int) ([]string, error) { return nil, ErrNotSupported }

// FD returns ErrNotSupported.
func FD(pid, fd int) (string, error) { return "", ErrNotSupported }
