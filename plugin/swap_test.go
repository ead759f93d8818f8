package plugin

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-go/handoff/plugin/internal/testplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// oneVersion makes three RPCs, with a pause in the middle, and checks one
// version answered all three.
func oneVersion(ctx context.Context, g testplugin.Greeter) (string, error) {
	v1, err := g.Version(ctx)
	if err != nil {
		return "", err
	}
	s, err := g.Greet(ctx, "sleep=1ms")
	if err != nil {
		return "", err
	}
	v2, err := g.Version(ctx)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(s, v1+":") || v2 != v1 {
		return "", fmt.Errorf("mixed versions in one call: %q, %q, %q", v1, s, v2)
	}
	return v1, nil
}

// Acceptance a: 16 callers, 100 swaps between two versions.
func TestSwapUnderLoad(t *testing.T) {
	const callers, swaps = 16, 100
	ev := newEvents()
	opts := baseOptions(t, bins["v1"])
	opts.OnEvent = ev.on
	m := newManager(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var (
		stop          atomic.Bool
		calls, failed atomic.Int64
		seen          sync.Map
		firstErr      atomic.Value
		wg            sync.WaitGroup
	)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 1_000_000 && !stop.Load(); n++ {
				var got string
				err := m.Call(ctx, fmt.Sprint("user-", i, "-", n), func(g testplugin.Greeter) error {
					var err error
					got, err = oneVersion(ctx, g)
					return err
				})
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				seen.Store(got, true)
			}
		}()
	}
	for i := range swaps {
		bin := bins[[]string{"v2", "v1"}[i%2]]
		_, err := m.Swap(ctx, bin)
		require.NoError(t, err, "swap %d", i)
	}
	stop.Store(true)
	wg.Wait()

	t.Logf("%d calls, %d failed, %d swaps, %d retired", calls.Load(), failed.Load(), ev.count(EventSwapped), ev.count(EventRetired))
	assert.Zero(t, failed.Load(), "failed calls of %d; first: %v", calls.Load(), firstErr.Load())
	for _, v := range []string{"v1", "v2"} {
		_, ok := seen.Load(v)
		assert.True(t, ok, "no call answered by %s", v)
	}
	assert.Equal(t, swaps+1, ev.count(EventSwapped), "swapped events")
	require.NoError(t, m.Close())
	assert.Empty(t, children(), "plugin processes left")
	assert.Equal(t, swaps+1, ev.count(EventRetired), "retired events (every process killed once)")
	for _, e := range ev.list() {
		assert.False(t, e.Kind == EventRetired && e.Forced, "%s was killed at the drain deadline", e.Version)
	}
}

// A call in flight during a swap finishes on the version it started on, and
// the old process stays until it has.
func TestSwapDrainsInFlight(t *testing.T) {
	ev := newEvents()
	opts := baseOptions(t, bins["v1"])
	opts.OnEvent = ev.on
	m := newManager(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	started := make(chan struct{})
	release := make(chan struct{})
	var late string
	result := make(chan error, 1)
	go func() {
		result <- m.Call(ctx, "", func(g testplugin.Greeter) error {
			close(started)
			<-release // hold the lease across the swap
			var err error
			late, err = g.Greet(ctx, "late")
			return err
		})
	}()
	<-started
	_, err := m.Swap(ctx, bins["v2"])
	require.NoError(t, err)
	// New calls go to v2 while the old call still holds v1.
	var now string
	require.NoError(t, m.Call(ctx, "", func(g testplugin.Greeter) error {
		var err error
		now, err = g.Version(ctx)
		return err
	}))
	require.Equal(t, "v2", now, "after the swap")
	require.Zero(t, ev.count(EventRetired), "old version retired while a call held it")
	close(release)
	require.NoError(t, <-result, "the in-flight call")
	require.Equal(t, "v1:hello late", late, "the in-flight call gets the old version's answer")
	e := ev.wait(t, EventRetired)
	assert.False(t, e.Forced, "drain was forced")
}

// A call that outlives the drain deadline is ended by the kill, with
// ErrPluginExited.
func TestDrainDeadline(t *testing.T) {
	ev := newEvents()
	opts := baseOptions(t, bins["v1"])
	opts.OnEvent = ev.on
	opts.DrainTimeout = 200 * time.Millisecond
	m := newManager(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	inCall := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- m.Call(ctx, "", func(g testplugin.Greeter) error {
			close(inCall)
			_, err := g.Greet(ctx, "sleep=60s")
			return err
		})
	}()
	<-inCall
	_, err := m.Swap(ctx, bins["v2"])
	require.NoError(t, err)
	e := ev.wait(t, EventRetired)
	assert.True(t, e.Forced, "retired event marked forced")
	require.ErrorIs(t, <-errc, ErrPluginExited, "a call cut by the deadline")
}

func TestVersionsAndRollback(t *testing.T) {
	m := newManager(t, baseOptions(t, bins["v1"]))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	version := func() string { return versionFor(t, m, "") }
	v2, err := m.Swap(ctx, bins["v2"])
	require.NoError(t, err)
	assert.Equal(t, StateServing, v2.State)
	assert.NotEmpty(t, v2.SHA256)
	assert.NotZero(t, v2.PID)
	assert.Equal(t, v2.SHA256, filepath.Base(v2.Staged), "the staged copy is named by its sha256")
	require.Equal(t, "v2", version(), "after the swap")
	_, err = m.Rollback(ctx)
	require.NoError(t, err)
	require.Equal(t, "v1", version(), "after the rollback")
	_, err = m.Rollback(ctx) // rolls forward
	require.NoError(t, err)
	require.Equal(t, "v2", version(), "after the second rollback")
	vs := m.Versions()
	require.Len(t, vs, 2)
	assert.Equal(t, StateServing, vs[0].State)
	assert.Positive(t, vs[0].Start)
	assert.Equal(t, StateRetired, vs[1].State)
	assert.False(t, vs[1].Serving.IsZero())
	// Each version counts the calls it answered: version() made one on
	// v2, one on v1, one on v2 again.
	assert.Equal(t, [2]int64{2, 1}, [2]int64{vs[0].Calls, vs[1].Calls}, "calls by version")
	assert.Zero(t, vs[0].Errors+vs[1].Errors, "errors")
	// Loading the same binary again changes nothing.
	again, err := m.Swap(ctx, bins["v2"])
	require.NoError(t, err)
	assert.Equal(t, vs[0].ID, again.ID, "the same binary")
}
