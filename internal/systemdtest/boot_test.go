//go:build linux

package systemdtest_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/internal/systemdtest"
)

// boot boots a sandbox for the test, or skips the test where that cannot
// be done: not as root, or, outside CI, where the namespaces, mounts or
// systemd are missing. As root in CI (CI set) the sandbox must boot: these
// tests are the only ones that run the units under a real systemd, and a
// skip there would hide that they did not run. It is closed at the end of
// the test.
func boot(t *testing.T, lifetime time.Duration) *systemdtest.Sandbox {
	t.Helper()
	mustRun := os.Geteuid() == 0 && os.Getenv("CI") != ""
	unavailable := func(err error) {
		t.Helper()
		if mustRun {
			require.FailNow(t, "systemd cannot be booted in namespaces, as root in CI", "%v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	if err := systemdtest.Available(); err != nil {
		unavailable(err)
	}
	start := time.Now()
	sb, err := systemdtest.Boot(context.Background(), systemdtest.Options{Lifetime: lifetime, BootTimeout: 15 * time.Second})
	if errors.Is(err, systemdtest.ErrUnavailable) {
		unavailable(err)
	}
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, sb.Close(), "teardown")
	})
	t.Logf("systemd booted in %s (host pid of its PID 1: %d)", time.Since(start).Round(time.Millisecond), sb.PID1)
	return sb
}

func TestBoot(t *testing.T) {
	sb := boot(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := sb.Run(ctx, "cat", "/proc/1/comm")
	require.NoError(t, err)
	require.Equal(t, "systemd", strings.TrimSpace(string(out)), "PID 1 inside")
	v, err := sb.Systemctl(ctx, "--version")
	require.NoError(t, err)
	t.Logf("%s", strings.SplitN(v, "\n", 2)[0])
}
