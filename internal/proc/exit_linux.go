//go:build linux

package proc

import (
	"context"
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// ExitWatch waits for a process to exit, whether it is a child of this
// process or not, without reaping it: on a pidfd, or (kernels before 5.3)
// by reading /proc every millisecond. Open it before the process may exit,
// so that the time Wait reports is the exit's.
type ExitWatch struct {
	pid    int
	fd     int       // the pidfd, -1 when polling /proc
	goneAt time.Time // set when the process had exited before the watch
}

// WatchExit starts watching pid. A pid that has exited already (or never
// existed) gives a watch whose Wait returns at once with the time of this
// call. Close the watch when done.
func WatchExit(pid int) (*ExitWatch, error) {
	w := &ExitWatch{pid: pid, fd: -1}
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case err == nil:
		w.fd = fd
	case errors.Is(err, unix.ESRCH):
		w.goneAt = time.Now()
	case errors.Is(err, unix.ENOSYS):
		if Gone(pid) {
			w.goneAt = time.Now()
		}
	default:
		return nil, err
	}
	return w, nil
}

// Wait blocks until the process has exited (a zombie counts as exited) and
// returns when, or until ctx ends, with ctx's error; a process that has
// exited is reported even when ctx has ended. Wait and Close must not be
// called concurrently.
func (w *ExitWatch) Wait(ctx context.Context) (time.Time, error) {
	if !w.goneAt.IsZero() {
		return w.goneAt, nil
	}
	// The exit is looked for before ctx: a process that has exited is
	// reported even to a ctx that has ended.
	for {
		if w.fd < 0 {
			if Gone(w.pid) {
				return time.Now(), nil
			}
		} else {
			// Bounded polls, so that ctx is looked at every 50 ms.
			n, err := unix.Poll([]unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}, 50)
			if n > 0 {
				return time.Now(), nil
			}
			if err != nil && !errors.Is(err, unix.EINTR) {
				return time.Time{}, err
			}
		}
		if ctx.Err() != nil {
			return time.Time{}, ctx.Err()
		}
		if w.fd < 0 {
			t := time.NewTimer(time.Millisecond)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
		}
	}
}

// Close releases the pidfd. It is idempotent.
func (w *ExitWatch) Close() {
	if w.fd >= 0 {
		_ = unix.Close(w.fd)
		w.fd = -1
	}
}
