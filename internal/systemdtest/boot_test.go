//go:build linux

package systemdtest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/handoff-go/handoff/internal/systemdtest"
)

// boot boots a sandbox for the test, or skips the test where that cannot
// be done. It is closed at the end of the test.
func boot(t *testing.T, lifetime time.Duration) *systemdtest.Sandbox {
	t.Helper()
	if err := systemdtest.Available(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	start := time.Now()
	sb, err := systemdtest.Boot(context.Background(), systemdtest.Options{Lifetime: lifetime, BootTimeout: 15 * time.Second})
	if errors.Is(err, systemdtest.ErrUnavailable) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sb.Close(); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	t.Logf("systemd booted in %s (host pid of its PID 1: %d)", time.Since(start).Round(time.Millisecond), sb.PID1)
	return sb
}

func TestBoot(t *testing.T) {
	sb := boot(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := sb.Run(ctx, "cat", "/proc/1/comm")
	if err != nil || strings.TrimSpace(string(out)) != "systemd" {
		t.Fatalf("PID 1 inside is %q (%v), want systemd", out, err)
	}
	v, err := sb.Systemctl(ctx, "--version")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", strings.SplitN(v, "\n", 2)[0])
}
