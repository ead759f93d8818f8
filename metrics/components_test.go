package metrics_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/bundle"
	"github.com/handoff-go/handoff/examples/pluginhost/greeter"
	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/metrics"
	"github.com/handoff-go/handoff/plugin"
	"github.com/handoff-go/handoff/reload"
)

func newRecorder(t *testing.T) (*metrics.Recorder, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	rec, err := metrics.New(metrics.Options{Registerer: reg})
	require.NoError(t, err)
	return rec, reg
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path+".tmp", []byte(content), 0o644))
	require.NoError(t, os.Rename(path+".tmp", path))
}

func component(t *testing.T, st metrics.Status, kind metrics.Kind, name string) metrics.Component {
	t.Helper()
	for _, c := range st.Components {
		if c.Kind == kind && c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s %q in the status", kind, name)
	return metrics.Component{}
}

// TestBundle: a bundle's swaps, refusals and rollbacks, its version and
// history, and the program's own OnEvent still called.
func TestBundle(t *testing.T) {
	rec, reg := newRecorder(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "index.html"), "<p>one</p>")
	var own []reload.EventKind
	h := rec.NewBundle("ui", dir, bundle.Options{Validate: func(b *bundle.Bundle) error {
		if _, err := b.ReadFile("index.html"); err != nil {
			return errors.New("no index.html")
		}
		return nil
	}, OnEvent: func(e reload.Event) { own = append(own, e.Kind) }})
	defer h.Close()
	ctx := context.Background()
	require.NoError(t, h.Reload(ctx))
	writeFile(t, filepath.Join(dir, "index.html"), "<p>two</p>")
	require.NoError(t, h.Reload(ctx))
	writeFile(t, filepath.Join(dir, "other.txt"), "no index")
	require.NoError(t, os.Remove(filepath.Join(dir, "index.html")))
	require.Error(t, h.Reload(ctx))
	v, err := rec.Rollback(ctx, metrics.KindBundle, "ui")
	require.NoError(t, err)

	lbl := []string{"kind", "bundle", "name", "ui"}
	assert.Equal(t, 2.0, valueOf(t, reg, "handoff_reloads_total", lbl...))
	assert.Equal(t, 1.0, valueOf(t, reg, "handoff_reload_failed_total", lbl...))
	assert.Equal(t, 1.0, valueOf(t, reg, "handoff_rollbacks_total", lbl...))
	assert.Equal(t, 0.0, valueOf(t, reg, "handoff_last_reload_successful", lbl...))
	assert.Positive(t, valueOf(t, reg, "handoff_last_reload_success_timestamp_seconds", lbl...))
	assert.Equal(t, 1.0, valueOf(t, reg, "handoff_version_info", append(lbl, "version", v[:12])...))

	c := component(t, rec.Status(), metrics.KindBundle, "ui")
	assert.Equal(t, v, c.Version)
	assert.Equal(t, uint64(1), c.Seq, "back to the first version")
	assert.Contains(t, c.LastError, "no index.html")
	assert.True(t, c.LastFailed)
	require.Len(t, c.History, 2)
	assert.True(t, c.CanRollback, "a second rollback rolls forward")
	assert.Contains(t, own, reload.EventRollback, "the program's OnEvent")

	_, err = rec.Rollback(ctx, metrics.KindBundle, "nope")
	assert.ErrorIs(t, err, metrics.ErrUnknown)
	assert.Panics(t, func() { rec.NewBundle("ui", dir, bundle.Options{}) }, "a name twice")
}

type testFlags struct {
	reg      flags.Registry
	checkout *flags.Bool
	color    *flags.Variants[string]
}

func newTestFlags() *testFlags {
	f := &testFlags{}
	f.checkout = f.reg.Bool(flags.Def{Name: "new-checkout", Description: "the one-page checkout",
		Owner: "team-payments", RemoveBy: "2099-12-31"}, false)
	f.color = f.reg.String(flags.Def{Name: "button-color", Description: "the buy button's colour",
		Owner: "team-growth", RemoveBy: "2099-12-31"}, "blue",
		flags.Variant[string]{Name: "blue", Value: "#00f"}, flags.Variant[string]{Name: "green", Value: "#0f0"})
	return f
}

// TestFlags: evaluations by flag and variant, the values in the status,
// and the program's OnExposure still called.
func TestFlags(t *testing.T) {
	rec, reg := newRecorder(t)
	tf := newTestFlags()
	path := filepath.Join(t.TempDir(), "flags.json")
	writeFile(t, path, `{"new-checkout": {"percent": 50}, "button-color": "green"}`)
	exposed := 0
	set := rec.NewFlags("flags", &tf.reg, path, flags.Options{OnExposure: func(flags.Exposure) { exposed++ }})
	defer set.Close()
	require.NoError(t, set.Reload(context.Background()))
	snap := set.Snapshot()
	on := 0
	for i := range 1000 {
		if tf.checkout.Enabled(snap, "user-"+string(rune('a'+i%26))+string(rune('a'+i/26))) {
			on++
		}
		tf.color.Get(snap, "u")
	}
	snap.Release()
	assert.Equal(t, 2000, exposed, "the program's OnExposure")
	assert.Equal(t, float64(on), valueOf(t, reg, "handoff_flag_evaluations_total", "flag", "new-checkout", "variant", "on"))
	assert.Equal(t, float64(1000-on), valueOf(t, reg, "handoff_flag_evaluations_total", "flag", "new-checkout", "variant", "off"))
	assert.Equal(t, 1000.0, valueOf(t, reg, "handoff_flag_evaluations_total", "flag", "button-color", "variant", "green"))
	assert.Equal(t, 0.0, valueOf(t, reg, "handoff_flag_evaluations_total", "flag", "button-color", "variant", "blue"), "every pair from the start")
	assert.Equal(t, 1.0, valueOf(t, reg, "handoff_reloads_total", "kind", "flags", "name", "flags"), "the file's load; the defaults a Set starts with are not a reload")

	c := component(t, rec.Status(), metrics.KindFlags, "flags")
	require.Len(t, c.Flags, 2)
	byName := map[string]metrics.Flag{c.Flags[0].Name: c.Flags[0], c.Flags[1].Name: c.Flags[1]}
	assert.Equal(t, `{"percent":50}`, byName["new-checkout"].Value)
	assert.Equal(t, `"green"`, byName["button-color"].Value)
	assert.Equal(t, []string{"blue", "green"}, byName["button-color"].Variants)
	assert.Equal(t, uint64(1000), byName["button-color"].Evaluations["green"])
	s, p, ok := rec.FlagSet("flags")
	assert.True(t, ok)
	assert.Same(t, set, s)
	assert.Equal(t, path, p)
}

// TestFlagSeriesBound: pairs beyond MaxFlagSeries are counted as one.
func TestFlagSeriesBound(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec, err := metrics.New(metrics.Options{Registerer: reg, MaxFlagSeries: 2})
	require.NoError(t, err)
	tf := newTestFlags() // 4 pairs; the first two by name are button-color's
	set := rec.NewFlags("flags", &tf.reg, "", flags.Options{})
	defer set.Close()
	snap := set.Snapshot()
	tf.checkout.Enabled(snap, "u")
	tf.checkout.Enabled(snap, "v")
	tf.color.Get(snap, "u")
	snap.Release()
	assert.Equal(t, 1.0, valueOf(t, reg, "handoff_flag_evaluations_total", "flag", "button-color", "variant", "blue"))
	assert.Equal(t, 2.0, valueOf(t, reg, "handoff_flag_evaluations_total", "flag", "_other"))
}

// TestPlugin: a plugin's swap, calls by version and outcome, rollback, and
// a canary rolled back on its own.
func TestPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two plugin binaries")
	}
	dir := t.TempDir()
	bins := map[string]string{}
	for _, v := range []string{"v1", "v2"} {
		bins[v] = filepath.Join(dir, "greeter-"+v)
		out, err := exec.Command("go", "build", "-ldflags", "-X main.version="+v, "-o", bins[v],
			"github.com/handoff-go/handoff/examples/pluginhost/plugin").CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	rec, reg := newRecorder(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := metrics.NewPlugin(ctx, rec, "broken", plugin.Options[greeter.Greeter]{
		Handshake: greeter.Handshake, Plugins: greeter.Plugins(nil), Path: filepath.Join(dir, "missing")})
	require.Error(t, err)
	m, err := metrics.NewPlugin(ctx, rec, "greeter", plugin.Options[greeter.Greeter]{
		Handshake: greeter.Handshake, Plugins: greeter.Plugins(nil), Path: bins["v1"], StageDir: filepath.Join(dir, "stage"),
		Canary: plugin.CanaryOptions{Percent: 50, MinCalls: -1, MaxErrorRate: -1}})
	require.NoError(t, err)
	defer m.Close()
	call := func(name string) error {
		return m.Call(ctx, name, func(g greeter.Greeter) error { _, err := g.Greet(ctx, name); return err })
	}
	require.NoError(t, call("a"))
	v2, err := m.Swap(ctx, bins["v2"])
	require.NoError(t, err)
	require.NoError(t, call("a"))
	require.NoError(t, call("b"))
	require.Error(t, m.Call(ctx, "", func(greeter.Greeter) error { return errors.New("fails") }))
	lbl := []string{"name", "greeter", "version", v2.ID}
	assert.Equal(t, 2.0, valueOf(t, reg, "handoff_plugin_calls_total", append(lbl, "outcome", "ok")...))
	assert.Equal(t, 1.0, valueOf(t, reg, "handoff_plugin_calls_total", append(lbl, "outcome", "error")...))
	assert.Equal(t, 1.0, valueOf(t, reg, "handoff_version_info", "kind", "plugin", "name", "greeter", "version", v2.ID))
	v1, err := rec.Rollback(ctx, metrics.KindPlugin, "greeter")
	require.NoError(t, err)
	assert.NotEqual(t, v2.ID, v1)

	// A canary of v2 that fails its first call is rolled back on its own.
	cv, err := m.Canary(ctx, bins["v2"])
	require.NoError(t, err)
	assert.Equal(t, 0.5, valueOf(t, reg, "handoff_plugin_canary_share_ratio", "name", "greeter"))
	c := component(t, rec.Status(), metrics.KindPlugin, "greeter")
	require.NotNil(t, c.Canary)
	assert.Equal(t, cv.ID, c.Canary.Version)
	changed := rec.Changed()
	for i := 0; valueOf(t, reg, "handoff_plugin_canary_rollbacks_total", "name", "greeter") == 0 && i < 200; i++ {
		_ = m.Call(ctx, "", func(greeter.Greeter) error { return errors.New("fails") })
		select {
		case <-changed:
			changed = rec.Changed()
		case <-time.After(10 * time.Millisecond):
		}
	}
	assert.Equal(t, 1.0, valueOf(t, reg, "handoff_plugin_canary_rollbacks_total", "name", "greeter"))
	assert.Equal(t, 0.0, valueOf(t, reg, "handoff_plugin_canary_share_ratio", "name", "greeter"))
	c = component(t, rec.Status(), metrics.KindPlugin, "greeter")
	assert.Nil(t, c.Canary)
	assert.Contains(t, c.LastCanary, "rolled back")
	assert.NotEmpty(t, c.Versions)
	assert.Equal(t, 2.0, valueOf(t, reg, "handoff_rollbacks_total", "kind", "plugin", "name", "greeter"), "one on demand, one canary")
	for _, cp := range rec.Status().Components {
		assert.NotEqual(t, "broken", cp.Name, "a plugin that failed to start stays unregistered")
	}
}

// TestPromtoolCheck (issue 13, 1): the exposition passes `promtool check
// metrics`, Prometheus's own lint, with every kind of metric present.
func TestPromtoolCheck(t *testing.T) {
	promtool := requireTool(t, "promtool", "prometheus")
	rec, _ := newRecorder(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "index.html"), "<p>one</p>")
	h := rec.NewBundle("ui", dir, bundle.Options{})
	defer h.Close()
	require.NoError(t, h.Reload(context.Background()))
	tf := newTestFlags()
	set := rec.NewFlags("flags", &tf.reg, "", flags.Options{})
	defer set.Close()
	playUpgrade(rec)
	body := get(t, rec.Handler(), "/metrics")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewBufferString(body)
	out, err := cmd.CombinedOutput()
	assert.NoError(t, err, "promtool check metrics:\n%s\non:\n%s", out, body)
	assert.Contains(t, body, "handoff_upgrade_phase_duration_seconds_bucket")
}

// requireTool returns the path of a command, skipping the test without it,
// or failing it when CI is set (.ci/run installs the Debian package pkg).
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (Debian package %s; .ci/run installs it)", name, pkg)
	}
	t.Skipf("%s is not installed (apt-get install %s)", name, pkg)
	return ""
}
