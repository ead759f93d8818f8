//go:build linux

package sdnotify_test

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/handoff-go/handoff/internal/sdnotify"
	"github.com/handoff-go/handoff/internal/sdnotify/sdnotifytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSendUnset(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if sdnotify.Enabled() {
		t.Fatal("Enabled with NOTIFY_SOCKET unset")
	}
	if ok, err := sdnotify.Send(sdnotify.Ready); ok || err != nil {
		t.Fatalf("Send = %v, %v; want false, nil", ok, err)
	}
	if ok, err := sdnotify.Barrier(time.Second); ok || err != nil {
		t.Fatalf("Barrier = %v, %v; want false, nil", ok, err)
	}
}

func TestSendAndBarrier(t *testing.T) {
	l := sdnotifytest.New(t)
	sends := [][]string{
		{sdnotify.Ready, sdnotify.Status("serving\nnow")},
		{sdnotify.Reloading, sdnotify.MonotonicUsec(), sdnotify.ExtendTimeout(90 * time.Second)},
		{sdnotify.Stopping},
	}
	for _, s := range sends {
		if ok, err := sdnotify.Send(s...); !ok || err != nil {
			t.Fatalf("Send(%q) = %v, %v", s, ok, err)
		}
	}
	// The barrier returns once the listener has read (and closed the fd of)
	// everything sent before it.
	if ok, err := sdnotify.Barrier(30 * time.Second); !ok || err != nil {
		t.Fatalf("Barrier = %v, %v", ok, err)
	}
	ms := l.Messages()
	if len(ms) != 4 {
		t.Fatalf("got %d messages, want 4: %v", len(ms), ms)
	}
	for i, m := range ms {
		if m.PID != os.Getpid() || m.UID != os.Getuid() {
			t.Errorf("message %d: credentials pid %d uid %d, want %d %d", i, m.PID, m.UID, os.Getpid(), os.Getuid())
		}
	}
	if got, want := ms[0].Text, "READY=1\nSTATUS=serving now"; got != want {
		t.Errorf("message 0 = %q, want %q", got, want)
	}
	r := ms[1]
	if len(r.Lines) != 3 || r.Lines[0] != "RELOADING=1" || !strings.HasPrefix(r.Lines[1], "MONOTONIC_USEC=") || r.Lines[2] != "EXTEND_TIMEOUT_USEC=90000000" {
		t.Errorf("message 1 = %q", r.Text)
	}
	if v, _ := r.Value("MONOTONIC_USEC"); v == "" || strings.Trim(v, "0123456789") != "" {
		t.Errorf("MONOTONIC_USEC=%q", v)
	}
	if ms[2].Text != "STOPPING=1" {
		t.Errorf("message 2 = %q", ms[2].Text)
	}
	if ms[3].Text != "BARRIER=1" || ms[3].FDs != 1 {
		t.Errorf("message 3 = %q with %d fds, want BARRIER=1 with 1", ms[3].Text, ms[3].FDs)
	}
}

func TestBarrierTimeout(t *testing.T) {
	l := sdnotifytest.New(t)
	l.HoldFDs(true)
	ok, err := sdnotify.Barrier(50 * time.Millisecond)
	if !ok || !errors.Is(err, sdnotify.ErrBarrierTimeout) {
		t.Fatalf("Barrier = %v, %v; want true, ErrBarrierTimeout", ok, err)
	}
	// Released, a new barrier passes.
	l.HoldFDs(false)
	l.ReleaseFDs()
	if ok, err := sdnotify.Barrier(30 * time.Second); !ok || err != nil {
		t.Fatalf("Barrier after release = %v, %v", ok, err)
	}
}

func TestSendNoListener(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", t.TempDir()+"/absent")
	if _, err := sdnotify.Send(sdnotify.Ready); err == nil {
		t.Error("Send to a missing socket: no error")
	}
	if _, err := sdnotify.Barrier(time.Second); err == nil {
		t.Error("Barrier to a missing socket: no error")
	}
}

func TestAbstractSocket(t *testing.T) {
	name := "@handoff-sdnotify-test-" + strconv.Itoa(os.Getpid())
	l, err := sdnotifytest.Listen(name)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", name)
	if ok, err := sdnotify.Send(sdnotify.Watchdog); !ok || err != nil {
		t.Fatalf("Send = %v, %v", ok, err)
	}
	if ok, err := sdnotify.Barrier(30 * time.Second); !ok || err != nil {
		t.Fatalf("Barrier = %v, %v", ok, err)
	}
	if m, ok := l.WaitFor(0, 10*time.Second, sdnotify.Watchdog); !ok || m.PID != os.Getpid() {
		t.Fatalf("WATCHDOG=1 not received from pid %d: %v", os.Getpid(), l.Messages())
	}
}

func TestWatchdogInterval(t *testing.T) {
	me := os.Getpid()
	cases := []struct {
		usec, pid string
		askPID    int
		want      time.Duration
		err       bool
	}{
		{"", "", me, 0, false},
		{"2000000", "", me, 2 * time.Second, false},
		{"2000000", strconv.Itoa(me), me, 2 * time.Second, false},
		{"2000000", strconv.Itoa(me + 1), me, 0, false},
		// A new generation asks with its parent's pid.
		{"2000000", "4711", 4711, 2 * time.Second, false},
		{"x", "", me, 0, true},
		{"-5", "", me, 0, true},
		{"0", "", me, 0, true},
		{"1000", "pid", me, 0, true},
	}
	for _, c := range cases {
		t.Setenv("WATCHDOG_USEC", c.usec)
		t.Setenv("WATCHDOG_PID", c.pid)
		got, err := sdnotify.WatchdogInterval(c.askPID)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q pid %d: got %v, %v; want %v, error %v", c.usec, c.pid, c.askPID, got, err, c.want, c.err)
		}
	}
}

// TestSystemdNotifyTool: systemd's own systemd-notify follows each message
// with a barrier and fails if it is not answered; the listener answers it.
func TestSystemdNotifyTool(t *testing.T) {
	bin, err := exec.LookPath("systemd-notify")
	if err != nil {
		t.Skip("systemd-notify not installed")
	}
	l := sdnotifytest.New(t)
	out, err := exec.Command(bin, "--ready", "--status=from the tool").CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-notify: %v\n%s", err, out)
	}
	ms := l.Messages()
	if len(ms) < 2 || !ms[0].Has(sdnotify.Ready) || !ms[0].Has("STATUS=from the tool") {
		t.Fatalf("messages: %v", ms)
	}
	last := ms[len(ms)-1]
	if last.Text != "BARRIER=1" || last.FDs != 1 {
		t.Errorf("last message %v with %d fds, want BARRIER=1 with one fd", last, last.FDs)
	}
}
