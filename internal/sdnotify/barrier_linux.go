//go:build linux

package sdnotify

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

func barrierUnix(socket string, timeout time.Duration) (bool, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return false, fmt.Errorf("sdnotify: barrier pipe: %w", err)
	}
	r, w := p[0], p[1]
	defer unix.Close(r)
	err := sendWithFD(socket, barrier, w)
	// Our copy of the write end must go: the manager's copy is the one whose
	// close we wait for.
	unix.Close(w)
	if err != nil {
		return false, fmt.Errorf("sdnotify: barrier: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return true, fmt.Errorf("%w after %s", ErrBarrierTimeout, timeout)
		}
		ms := int(left.Milliseconds()) + 1
		fds := []unix.PollFd{{Fd: int32(r)}} // POLLHUP is always reported
		n, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return true, fmt.Errorf("sdnotify: barrier poll: %w", err)
		}
		if n > 0 && fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
			return true, nil
		}
	}
}

// sendWithFD sends msg with fd attached (SCM_RIGHTS) as one datagram.
func sendWithFD(socket, msg string, fd int) error {
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	// SockaddrUnix maps a leading '@' to the abstract namespace.
	return unix.Sendmsg(s, []byte(msg), unix.UnixRights(fd), &unix.SockaddrUnix{Name: socket}, 0)
}
