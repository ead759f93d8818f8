package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-go/handoff/plugin/internal/testplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
	require.NoError(t, m.Call(ctx, "", func(g testplugin.Greeter) error {
		_, err := oneVersion(ctx, g)
		return err
	}))
}

// killPID kills a plugin process with SIGKILL (TerminateProcess on Windows).
func killPID(t *testing.T, pid int) {
	t.Helper()
	p, err := os.FindProcess(pid)
	require.NoError(t, err)
	require.NoError(t, p.Kill())
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
				killPID(t, cur.PID)
				crash := ev.wait(t, EventCrashed)
				require.Equal(t, cur.PID, crash.PluginPID, "the crash reported")
				if i == 1 {
					// Within the backoff: the behaviour chosen.
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					err := m.Call(ctx, "", func(g testplugin.Greeter) error {
						_, err := g.Version(ctx)
						return err
					})
					cancel()
					if mode == FailFast {
						assert.ErrorIs(t, err, ErrRestarting, "a call during the restart")
					} else {
						assert.NoError(t, err, "a call during the restart waits and succeeds")
					}
				}
				re := ev.wait(t, EventRestarted)
				require.NotZero(t, re.PluginPID)
				require.NotEqual(t, cur.PID, re.PluginPID, "restarted as the same pid")
				callOK(t, m)
			}
			l.end()
			t.Logf("%d calls: %d failed (%d ErrPluginExited, %d ErrRestarting)",
				l.calls.Load(), l.failed.Load(), l.exited.Load(), l.restarting.Load())
			assert.Nil(t, l.other.Load(), "a call failed with neither ErrPluginExited nor ErrRestarting")
			if mode == WaitForRestart {
				assert.Zero(t, l.restarting.Load(), "calls that got ErrRestarting while waiting was chosen")
			}
			v := m.Versions()[0]
			assert.Equal(t, 2, v.Restarts, "restarts of %+v", v)
			assert.Equal(t, StateServing, v.State)
			require.NoError(t, m.Close())
			assert.Empty(t, children(), "plugin processes left")
		})
	}
}
