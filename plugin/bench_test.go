package plugin

import (
	"context"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-go/handoff/plugin/internal/testplugin"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawPlugin is the plugin started with go-plugin alone, as its README
// shows, with the same binary, transport (gRPC over a unix socket) and
// plugin map as the manager's.
type rawPlugin struct {
	c *goplugin.Client
	g testplugin.Greeter
}

func startRaw(tb testing.TB, bin string) *rawPlugin {
	tb.Helper()
	c := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  testplugin.Handshake,
		Plugins:          testplugin.Plugins(nil),
		Cmd:              exec.Command(bin),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           newHclog(slog.New(slog.NewTextHandler(io.Discard, nil))),
	})
	tb.Cleanup(c.Kill)
	proto, err := c.Client()
	require.NoError(tb, err)
	raw, err := proto.Dispense(testplugin.Name)
	require.NoError(tb, err)
	return &rawPlugin{c: c, g: raw.(testplugin.Greeter)}
}

func quietOptions(tb testing.TB, path string) Options[testplugin.Greeter] {
	o := baseOptions(tb, path)
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return o
}

// Acceptance e, per-call cost. Sequential calls, raw and through the
// manager, in alternating blocks so both see the same machine load; the
// ratio is reported as manager/raw.
func BenchmarkCall(b *testing.B) {
	ctx := context.Background()
	raw := startRaw(b, bins["v1"])
	m := newManager(b, quietOptions(b, bins["v1"]))
	call := func(g testplugin.Greeter) error {
		_, err := g.Greet(ctx, "bench")
		return err
	}
	b.Run("raw", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			require.NoError(b, call(raw.g))
		}
	})
	b.Run("manager", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			require.NoError(b, m.Call(ctx, "", call))
		}
	})
	b.Run("interleaved", func(b *testing.B) {
		// One raw call and one manager call per iteration, in alternating
		// order, each timed; medians shrug off the other tenants' spikes.
		var raws, mgrs []time.Duration
		for i := 0; b.Loop(); i++ {
			timeRaw := func() {
				t0 := time.Now()
				require.NoError(b, call(raw.g))
				raws = append(raws, time.Since(t0))
			}
			timeMgr := func() {
				t0 := time.Now()
				require.NoError(b, m.Call(ctx, "", call))
				mgrs = append(mgrs, time.Since(t0))
			}
			if i%2 == 0 {
				timeRaw()
				timeMgr()
			} else {
				timeMgr()
				timeRaw()
			}
		}
		r, g := median(raws), median(mgrs)
		b.ReportMetric(float64(r.Nanoseconds()), "raw-median-ns")
		b.ReportMetric(float64(g.Nanoseconds()), "manager-median-ns")
		b.ReportMetric(float64(g)/float64(r), "manager/raw")
	})
	b.Run("lease-only", func(b *testing.B) {
		// The manager's own share of a call: lease, pick, release.
		b.ReportAllocs()
		nop := func(testplugin.Greeter) error { return nil }
		for b.Loop() {
			require.NoError(b, m.Call(ctx, "", nop))
		}
	})
	b.Run("parallel-raw", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !assert.NoError(b, call(raw.g)) {
					return
				}
			}
		})
	})
	b.Run("parallel-manager", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if !assert.NoError(b, m.Call(ctx, "", call)) {
					return
				}
			}
		})
	})
}

// Acceptance e, time from a new binary appearing at the watched path to
// the new version serving: the watcher's debounce (reload.DefaultDebounce),
// staging and checksum, exec, handshake, dispense, health check, swap.
func BenchmarkNewBinaryToServing(b *testing.B) {
	ev := newEvents()
	path := filepath.Join(b.TempDir(), "greeter")
	copyFile(b, bins["v1"], path)
	opts := quietOptions(b, path)
	opts.OnEvent = ev.on
	m := newManager(b, opts)
	ev.wait(b, EventSwapped)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Watch(ctx) }()
	defer func() {
		cancel()
		require.NoError(b, <-done)
	}()
	ev.wait(b, EventUnchanged) // Watch's first load
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		copyFile(b, bins[[]string{"v2", "v1"}[i%2]], path)
		ev.wait(b, EventSwapped)
		total += time.Since(t0)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/new-binary")
}

// Acceptance e, failed calls per swap under load (16 callers): the naive
// order (start the new plugin, switch callers to it, kill the old one at
// once) against the manager's (calls lease a version; the old process is
// killed after its last call).
func BenchmarkSwapFailedCalls(b *testing.B) {
	const callers = 16
	ctx := context.Background()
	run := func(b *testing.B, call func() error, swap func(i int)) {
		var stop atomic.Bool
		var calls, failed atomic.Int64
		var wg sync.WaitGroup
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < 100_000_000 && !stop.Load(); n++ {
					if err := call(); err != nil {
						failed.Add(1)
					}
					calls.Add(1)
				}
			}()
		}
		for i := 0; b.Loop(); i++ {
			swap(i)
		}
		stop.Store(true)
		wg.Wait()
		b.ReportMetric(float64(failed.Load())/float64(b.N), "failed/swap")
		b.ReportMetric(float64(calls.Load())/float64(b.N), "calls/swap")
	}
	greet := func(g testplugin.Greeter) error {
		_, err := g.Greet(ctx, "x")
		return err
	}
	b.Run("naive", func(b *testing.B) {
		var cur atomic.Pointer[rawPlugin]
		cur.Store(startRaw(b, bins["v1"]))

		run(b, func() error { return greet(cur.Load().g) }, func(i int) {
			next := startRaw(b, bins[[]string{"v2", "v1"}[i%2]])
			old := cur.Swap(next)
			old.c.Kill()
		})
	})
	b.Run("handoff", func(b *testing.B) {
		m := newManager(b, quietOptions(b, bins["v1"]))
		run(b, func() error { return m.Call(ctx, "", greet) }, func(i int) {
			_, err := m.Swap(ctx, bins[[]string{"v2", "v1"}[i%2]])
			require.NoError(b, err)
		})
		require.NoError(b, m.Close())
	})
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
