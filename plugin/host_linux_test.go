package plugin

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// pluginGone waits for the plugin pid, whose host was killed, to exit by
// itself: the parent-death signal ends it. A pidfd becomes readable when
// its process exits.
func pluginGone(t *testing.T, pid int) {
	t.Helper()
	pidfd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return // gone already
	}
	require.NoError(t, err, "pidfd_open")
	defer unix.Close(pidfd)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := unix.Poll(fds, int(time.Until(deadline).Milliseconds()))
		if errors.Is(err, unix.EINTR) && time.Now().Before(deadline) {
			continue
		}
		require.NoError(t, err, "poll")
		require.NotZero(t, n, "plugin %d still running 20s after its host was killed", pid)
		t.Logf("plugin %d exited after its host was killed with SIGKILL", pid)
		return
	}
}
