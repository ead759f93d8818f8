package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-go/handoff/plugin/internal/testplugin"
	"golang.org/x/sys/unix"
)

// load runs callers until stop is closed and sorts their errors.
type load struct {
	calls, failed, exited, restarting atomic.Int64
	other                             atomic.Value
	wg                                sync.WaitGroup
	stop                              chan struct{}
}

func startLoad(m *Manager[testplugin.Greeter], callers int) *load {
	l := &load{stop: make(chan struct{})}
	for i := range callers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; n < 1_000_000; n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := m.Call(ctx, fmt.Sprint(i, "/", n), func(g testplugin.Greeter) error {
					_, err := oneVersion(ctx, g)
					return err
				})
				cancel()
				l.calls.Add(1)
				switch {
				case err == nil:
				case errors.Is(err, ErrPluginExited):
					l.failed.Add(1)
					l.exited.Add(1)
				case errors.Is(err, ErrRestarting):
					l.failed.Add(1)
					l.restarting.Add(1)
					time.Sleep(time.Millisecond) // a client's pacing, so fail-fast callers do not spin
				default:
					l.failed.Add(1)
					l.other.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	return l
}

func (l *load) end() { close(l.stop); l.wg.Wait() }

func callOK(t *testing.T, m *Manager[testplugin.Greeter]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Call(ctx, "", func(g testplugin.Greeter) error {
		_, err := oneVersion(ctx, g)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// Acceptance c, first half: kill -9 of the plugin under load, with each
// crash mode. The first crash restarts at once; the second waits
// RestartBackoff, during which calls wait (WaitForRestart) or fail with
// ErrRestarting (FailFast).
func TestCrashRestart(t *testing.T) {
	for _, mode := range []CrashMode{WaitForRestart, FailFast} {
		t.Run(map[CrashMode]string{WaitForRestart: "wait", FailFast: "failfast"}[mode], func(t *testing.T) {
			ev := newEvents()
			opts := baseOptions(t, bins["v1"])
			opts.OnEvent = ev.on
			opts.OnCrash = mode
			opts.RestartBackoff = 500 * time.Millisecond
			m := newManager(t, opts)
			l := startLoad(m, 8)
			for i := range 2 {
				cur, _, _ := m.Current()
				if err := syscall.Kill(cur.PID, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				crash := ev.wait(t, EventCrashed)
				if crash.PID != cur.PID {
					t.Fatalf("crash of pid %d reported, killed %d", crash.PID, cur.PID)
				}
				if i == 1 {
					// Within the backoff: the behaviour chosen.
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					err := m.Call(ctx, "", func(g testplugin.Greeter) error {
						_, err := g.Version(ctx)
						return err
					})
					cancel()
					if mode == FailFast && !errors.Is(err, ErrRestarting) {
						t.Errorf("call during restart: %v, want ErrRestarting", err)
					}
					if mode == WaitForRestart && err != nil {
						t.Errorf("call during restart: %v, want it to wait and succeed", err)
					}
				}
				re := ev.wait(t, EventRestarted)
				if re.PID == cur.PID || re.PID == 0 {
					t.Fatalf("restarted as pid %d", re.PID)
				}
				callOK(t, m)
			}
			l.end()
			t.Logf("%d calls: %d failed (%d ErrPluginExited, %d ErrRestarting)",
				l.calls.Load(), l.failed.Load(), l.exited.Load(), l.restarting.Load())
			if err := l.other.Load(); err != nil {
				t.Errorf("a call failed with neither ErrPluginExited nor ErrRestarting: %v", err)
			}
			if mode == WaitForRestart && l.restarting.Load() != 0 {
				t.Errorf("%d calls got ErrRestarting while waiting was chosen", l.restarting.Load())
			}
			if v := m.Versions()[0]; v.Restarts != 2 || v.State != StateServing {
				t.Errorf("version after two restarts: %+v", v)
			}
			m.Close()
			if kids := children(t); len(kids) != 0 {
				t.Errorf("plugin processes left: %v", kids)
			}
		})
	}
}

// Acceptance c, second half: kill -9 of the host; the plugin exits by
// itself (Linux parent-death signal).
func TestHostKilled(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	host := exec.CommandContext(ctx, exe, "-test.run=^$")
	host.Env = append(os.Environ(), roleEnv+"=host", "HANDOFF_PLUGIN_TEST_BIN="+bins["v1"])
	host.Stderr = tWriter{t}
	stdin, err := host.StdinPipe() // held open: the host waits on it
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	line := readLine(t, out)
	pid, err := strconv.Atoi(strings.TrimPrefix(line, "pid "))
	if err != nil || pid == 0 {
		host.Process.Kill()
		host.Wait()
		t.Fatalf("host said %q", line)
	}
	if ppid, _, ok := procStat(pid); !ok || ppid != host.Process.Pid {
		t.Fatalf("plugin %d: parent %d, want the host %d", pid, ppid, host.Process.Pid)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v", err)
	}
	defer unix.Close(pidfd)

	if err := host.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = host.Wait()
	// A pidfd becomes readable when its process exits.
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := unix.Poll(fds, int(time.Until(deadline).Milliseconds()))
		if err == unix.EINTR && time.Now().Before(deadline) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("plugin %d still running 20s after its host was killed", pid)
		}
		break
	}
	t.Logf("plugin %d exited after its host %d was killed with SIGKILL", pid, host.Process.Pid)
}
