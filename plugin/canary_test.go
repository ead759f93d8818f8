package plugin

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/handoff-go/handoff/plugin/internal/testplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// versionFor calls with key and returns the version that answered, or
// "error".
func versionFor(t *testing.T, m *Manager[testplugin.Greeter], key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var s string
	err := m.Call(ctx, key, func(g testplugin.Greeter) error {
		v, err := g.Version(ctx)
		if err != nil {
			return err
		}
		_, err = g.Greet(ctx, key)
		s = v
		return err
	})
	if err != nil {
		return "error"
	}
	return s
}

// Acceptance d, first half: a 10 % canary takes about 10 % of the distinct
// keys, and each key stays on its side.
func TestCanarySplit(t *testing.T) {
	ev := newEvents()
	opts := baseOptions(t, bins["v1"])
	opts.OnEvent = ev.on
	opts.Canary = CanaryOptions{Percent: 10, PromoteAfterCalls: -1}
	m := newManager(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := m.Canary(ctx, bins["v2"])
	require.NoError(t, err)
	require.Equal(t, StateCanary, c.State)
	const keys = 2000
	side := make(map[string]string, keys)
	n2 := 0
	for i := range keys {
		k := fmt.Sprintf("user-%d", i)
		v := versionFor(t, m, k)
		side[k] = v
		if v == "v2" {
			n2++
		}
	}
	share := 100 * float64(n2) / keys
	t.Logf("canary at 10%%: %d of %d distinct keys (%.1f%%) reached v2", n2, keys, share)
	assert.InDelta(t, 10, share, 3, "the canary's share of the keys, in %")
	for i := 0; i < keys; i += 7 {
		k := fmt.Sprintf("user-%d", i)
		require.Equal(t, side[k], versionFor(t, m, k), "key %s moved", k)
	}
	st, cv, ok := m.Current()
	require.True(t, ok, "a canary is current")
	assert.NotEqual(t, st.ID, cv.ID)
	assert.Equal(t, StateCanary, cv.State)
	// Promote on demand: every key on v2, v1 retired.
	_, err = m.Promote()
	require.NoError(t, err)
	for i := range 200 {
		require.Equal(t, "v2", versionFor(t, m, fmt.Sprintf("user-%d", i)), "after the promotion")
	}
	ev.wait(t, EventRetired)
}

// Acceptance d, second half: a canary that returns errors is rolled back on
// its own, and every call returns to the old version.
func TestCanaryRollsBack(t *testing.T) {
	ev := newEvents()
	opts := baseOptions(t, bins["v1"])
	opts.OnEvent = ev.on
	opts.Canary = CanaryOptions{Percent: 10, MinCalls: 20, MaxErrorRate: 0.05}
	m := newManager(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := m.Canary(ctx, bins["erroring"])
	require.NoError(t, err)
	failed, i := 0, 0
	for ; i < 20000 && ev.count(EventCanaryRolledBack) == 0; i++ {
		if versionFor(t, m, fmt.Sprintf("user-%d", i)) == "error" {
			failed++
		}
	}
	e := ev.wait(t, EventCanaryRolledBack)
	t.Logf("rolled back after %d calls (%d failed): %s; canary saw %d calls, %d failed", i, failed, e.Reason, e.Calls, e.Failures)
	assert.GreaterOrEqual(t, e.Calls, int64(20), "calls the canary saw")
	assert.Positive(t, e.Failures, "failures the canary saw")
	for j := range 1000 {
		require.Equal(t, "v1", versionFor(t, m, fmt.Sprintf("user-%d", j)), "after the rollback, key %d", j)
	}
	_, c, ok := m.Current()
	require.False(t, ok, "canary still current: %+v", c)
	ev.wait(t, EventRetired)
}

// A healthy canary is promoted on its own after PromoteAfterCalls.
func TestCanaryPromotes(t *testing.T) {
	ev := newEvents()
	opts := baseOptions(t, bins["v1"])
	opts.OnEvent = ev.on
	opts.Canary = CanaryOptions{Percent: 50, PromoteAfterCalls: 50}
	opts.Path = filepath.Join(t.TempDir(), "plugin")
	copyFile(t, bins["v1"], opts.Path)
	m := newManager(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	copyFile(t, bins["v2"], opts.Path)
	require.NoError(t, m.Reload(ctx)) // Canary.Percent > 0: starts a canary
	_, c, ok := m.Current()
	require.True(t, ok, "a canary runs")
	require.Equal(t, StateCanary, c.State)
	for i := 0; i < 5000 && ev.count(EventCanaryPromoted) == 0; i++ {
		versionFor(t, m, fmt.Sprintf("k%d", i))
	}
	e := ev.wait(t, EventCanaryPromoted)
	t.Logf("promoted: %s", e.Reason)
	for i := range 100 {
		require.Equal(t, "v2", versionFor(t, m, fmt.Sprintf("k%d", i)), "after the promotion")
	}
}
