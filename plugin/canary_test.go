package plugin

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/handoff-go/handoff/plugin/internal/testplugin"
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
	if err != nil {
		t.Fatal(err)
	}
	if c.State != StateCanary {
		t.Fatalf("canary: %+v", c)
	}
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
	if share < 7 || share > 13 {
		t.Errorf("canary share %.1f%%, want about 10%%", share)
	}
	for i := 0; i < keys; i += 7 {
		k := fmt.Sprintf("user-%d", i)
		if v := versionFor(t, m, k); v != side[k] {
			t.Fatalf("key %s moved from %s to %s", k, side[k], v)
		}
	}
	st, cv, ok := m.Current()
	if !ok || st.ID == cv.ID || cv.State != StateCanary {
		t.Fatalf("current: %+v %+v %v", st, cv, ok)
	}
	// Promote on demand: every key on v2, v1 retired.
	if _, err := m.Promote(); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if v := versionFor(t, m, fmt.Sprintf("user-%d", i)); v != "v2" {
			t.Fatalf("after promotion a key got %s", v)
		}
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
	if _, err := m.Canary(ctx, bins["erroring"]); err != nil {
		t.Fatal(err)
	}
	failed, i := 0, 0
	for ; i < 20000 && ev.count(EventCanaryRolledBack) == 0; i++ {
		if versionFor(t, m, fmt.Sprintf("user-%d", i)) == "error" {
			failed++
		}
	}
	e := ev.wait(t, EventCanaryRolledBack)
	t.Logf("rolled back after %d calls (%d failed): %s; canary saw %d calls, %d errors", i, failed, e.Reason, e.Calls, e.Errors)
	if e.Calls < 20 || e.Errors == 0 {
		t.Errorf("rollback event: %+v", e)
	}
	for j := range 1000 {
		if v := versionFor(t, m, fmt.Sprintf("user-%d", j)); v != "v1" {
			t.Fatalf("after rollback key %d got %s", j, v)
		}
	}
	if _, c, ok := m.Current(); ok {
		t.Fatalf("canary still current: %+v", c)
	}
	ev.wait(t, EventRetired)
}

// A healthy canary is promoted on its own after PromoteAfterCalls.
func TestCanaryPromotes(t *testing.T) {
	ev := newEvents()
	opts := baseOptions(t, bins["v1"])
	opts.OnEvent = ev.on
	opts.Canary = CanaryOptions{Percent: 50, PromoteAfterCalls: 50}
	opts.Path = t.TempDir() + "/plugin"
	copyFile(t, bins["v1"], opts.Path)
	m := newManager(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	copyFile(t, bins["v2"], opts.Path)
	c, err := m.Reload(ctx) // Canary.Percent > 0: starts a canary
	if err != nil || c.State != StateCanary {
		t.Fatalf("reload: %+v, %v", c, err)
	}
	for i := 0; i < 5000 && ev.count(EventCanaryPromoted) == 0; i++ {
		versionFor(t, m, fmt.Sprintf("k%d", i))
	}
	e := ev.wait(t, EventCanaryPromoted)
	t.Logf("promoted: %s", e.Reason)
	for i := range 100 {
		if v := versionFor(t, m, fmt.Sprintf("k%d", i)); v != "v2" {
			t.Fatalf("after promotion: %s", v)
		}
	}
}
