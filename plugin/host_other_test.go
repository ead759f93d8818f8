//go:build unix && !linux

package plugin

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// pluginGone ends the plugin pid, whose host was killed: without a
// parent-death signal it would run on (see the package documentation).
func pluginGone(t *testing.T, pid int) {
	t.Helper()
	_ = unix.Kill(pid, unix.SIGKILL)
	require.Eventually(t, func() bool {
		return errors.Is(unix.Kill(pid, 0), unix.ESRCH)
	}, 20*time.Second, 10*time.Millisecond, "plugin %d still running", pid)
}
