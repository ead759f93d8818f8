//go:build linux

package upgrader

import (
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/handoff-go/handoff/internal/proc"
)

// canFindChild: findChild works here.
const canFindChild = true

// findChild returns the pid of the process tableflip started for the
// current upgrade, or 0: a child of this process whose environment carries
// tableflip's variable and whose fds 3 and 4 are pipes (the two tableflip
// passes). This process removed the variable from its environment in New,
// so the children it starts otherwise do not carry it. (A child of this
// process caught between fork and exec shows this process's original
// environment and fds; if that is not tableflip's own child on its way to
// exec, the program started a process during the upgrade's first
// milliseconds, and it is killed too: the one imprecision left.)
//
// It is used only for a child that never introduced itself over the control
// channel (a binary that does not call New), whose pid is otherwise unknown.
func findChild() int {
	for _, pid := range proc.Children(os.Getpid()) {
		env, err := proc.Environ(pid)
		if err != nil || !slices.ContainsFunc(env, func(v string) bool { return strings.HasPrefix(v, sentinelEnv+"=") }) {
			continue
		}
		if isPipe(pid, 3) && isPipe(pid, 4) {
			return pid
		}
	}
	return 0
}

func isPipe(pid, fd int) bool {
	l, err := proc.FD(pid, fd)
	return err == nil && strings.HasPrefix(l, "pipe:")
}

// waitGone waits, at most timeout, until pid has exited (its fds, the shared
// sockets among them, are closed then, even before it is reaped). It waits on
// a pidfd.
func waitGone(pid int, timeout time.Duration) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // gone already
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(timeout)
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms <= 0 {
			return
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n > 0 {
			return
		}
	}
}
