package flags_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/flags/flagstest"
	"github.com/handoff-go/handoff/flags/flagsyaml"
	"github.com/handoff-go/handoff/reload"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDefinitionsRefused(t *testing.T) {
	good := flags.Def{Name: "x", Description: "d", Owner: "o", RemoveBy: "2030-01-01"}
	cases := map[string]struct {
		def  func(d flags.Def) flags.Def
		want string
	}{
		"no owner":       {func(d flags.Def) flags.Def { d.Owner = ""; return d }, "no Owner"},
		"no description": {func(d flags.Def) flags.Def { d.Description = " "; return d }, "no Description"},
		"no date":        {func(d flags.Def) flags.Def { d.RemoveBy = ""; return d }, "no RemoveBy"},
		"bad date":       {func(d flags.Def) flags.Def { d.RemoveBy = "31/12/2030"; return d }, "not a date"},
		"bad name":       {func(d flags.Def) flags.Def { d.Name = "New Checkout"; return d }, "lower-case"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var reg flags.Registry
			defer func() {
				r := recover()
				var de *flags.DefinitionError
				require.ErrorAs(t, r.(error), &de)
				assert.Contains(t, de.Error(), c.want)
			}()
			reg.Bool(c.def(good), false)
		})
	}
	var reg flags.Registry
	reg.Bool(good, false)
	assert.PanicsWithError(t, `flags: definition of "x" refused: registered twice`, func() { reg.Bool(good, true) })
	good.Name = "y"
	assert.Panics(t, func() { reg.String(good, "c", flags.Variant[string]{Name: "a"}) }, "default is no variant")
	assert.Panics(t, func() { reg.String(good, "a") }, "no variant")
	assert.Panics(t, func() {
		reg.String(good, "a", flags.Variant[string]{Name: "a"}, flags.Variant[string]{Name: "a"})
	}, "a variant twice")
	assert.Panics(t, func() { reg.String(good, "a", flags.Variant[string]{Name: "a", Weight: -1}) }, "negative weight")
}

// TestFileRefused: each problem is named with the file and the flag, and
// wraps its sentinel; a file with several problems reports them all.
func TestFileRefused(t *testing.T) {
	tf := newTestFlags()
	cases := []struct {
		file, flag string
		want       error
		text       string
	}{
		{`[1]`, "", flags.ErrSyntax, "not an object of flags"},
		{``, "", flags.ErrSyntax, "empty"},
		{`{"new-checkout": true`, "", flags.ErrSyntax, "does not end"},
		{`{"new-checkout": true} {}`, "", flags.ErrSyntax, "more after"},
		{`{"new-checkout": true, "new-checkout": false}`, "new-checkout", flags.ErrSyntax, "set twice"},
		{`{"old-checkout": true}`, "old-checkout", flags.ErrUnknownFlag, "not registered"},
		{`{"new-checkout": "green"}`, "new-checkout", flags.ErrWrongKind, "bool flag given a string"},
		{`{"new-checkout": {"weights": {"on": 1}}}`, "new-checkout", flags.ErrWrongKind, "given weights"},
		{`{"button-color": true}`, "button-color", flags.ErrWrongKind, "string flag given a boolean"},
		{`{"button-color": {"percent": 5}}`, "button-color", flags.ErrWrongKind, `given "percent"`},
		{`{"page-size": 3}`, "page-size", flags.ErrWrongKind, "number flag given 3"},
		{`{"new-checkout": {"percent": 120}}`, "new-checkout", flags.ErrInvalid, "percent 120 is not within 0–100"},
		{`{"new-checkout": {"percent": 5, "on": true}}`, "new-checkout", flags.ErrInvalid, "both"},
		{`{"new-checkout": {"percnt": 5}}`, "new-checkout", flags.ErrInvalid, `unknown field "percnt"`},
		{`{"button-color": "purple"}`, "button-color", flags.ErrInvalid, `no variant "purple"`},
		{`{"button-color": {"weights": {"blue": 0}}}`, "button-color", flags.ErrInvalid, "all zero"},
		{`{"button-color": {"weights": {"blue": -1, "green": 2}}}`, "button-color", flags.ErrInvalid, "weights are numbers ≥ 0"},
		{`{"button-color": {"allow": {"red": ["k"]}}}`, "button-color", flags.ErrInvalid, `allow: no variant "red"`},
		{`{"new-checkout": {"rules": [{"values": ["FR"], "on": true}]}}`, "new-checkout", flags.ErrInvalid, `rule 1: no "attribute"`},
		{`{"new-checkout": {"rules": [{"attribute": "country", "values": ["FR"]}]}}`, "new-checkout", flags.ErrInvalid, `rule 1: neither`},
	}
	for _, c := range cases {
		_, err := flags.Parse(tf.reg, "flags.json", []byte(c.file))
		require.Error(t, err, c.file)
		assert.ErrorIs(t, err, c.want, c.file)
		var fe *flags.FileError
		require.ErrorAs(t, err, &fe, c.file)
		assert.Equal(t, "flags.json", fe.File)
		assert.Equal(t, c.flag, fe.Flag, c.file)
		assert.Contains(t, err.Error(), c.text, c.file)
		if c.flag != "" {
			assert.Contains(t, err.Error(), fmt.Sprintf("flags: flags.json: flag %q: ", c.flag))
		}
	}

	_, err := flags.Parse(tf.reg, "flags.json", []byte(`{"a": 1, "new-checkout": 2, "button-color": "blue"}`))
	assert.ErrorIs(t, err, flags.ErrUnknownFlag)
	assert.ErrorIs(t, err, flags.ErrWrongKind)
	assert.Equal(t, 2, strings.Count(err.Error(), "flags: flags.json: flag"), err.Error())
}

// TestEvaluationOrder: deny, allow, rules, then the rest.
func TestEvaluationOrder(t *testing.T) {
	tf := newTestFlags()
	set := flagstest.New(t, tf.reg, map[string]any{
		"new-checkout": map[string]any{"on": false, "allow": []string{"qa", "ceo"}, "deny": []string{"ceo"},
			"rules": []any{map[string]any{"attribute": "country", "values": []string{"FR"}, "on": true}}},
		"button-color": map[string]any{"variant": "blue", "allow": map[string][]string{"green": {"qa"}},
			"rules": []any{map[string]any{"attribute": "plan", "values": []string{"pro"}, "variant": "green"}}},
	})
	snap := set.Snapshot()
	defer snap.Release()
	assert.True(t, tf.checkout.Enabled(snap, "qa"))
	assert.False(t, tf.checkout.Enabled(snap, "ceo"), "deny before allow")
	assert.False(t, tf.checkout.Enabled(snap, "u1"))
	assert.True(t, tf.checkout.Enabled(snap, "u1", flags.Attr{Name: "country", Value: "FR"}))
	assert.False(t, tf.checkout.Enabled(snap, "ceo", flags.Attr{Name: "country", Value: "FR"}))
	assert.Equal(t, "#00ff00", tf.color.Get(snap, "qa"))
	assert.Equal(t, "#0000ff", tf.color.Get(snap, "u1"))
	assert.Equal(t, "#00ff00", tf.color.Get(snap, "u1", flags.Attr{Name: "plan", Value: "pro"}))

	// Defaults: the definition's default, or its default weights.
	assert.Equal(t, 20.0, tf.limit.Get(snap, "u1"))
	threes := 0
	for i := range 1000 {
		if tf.layout.Get(snap, rolloutKey(i)).Columns == 3 {
			threes++
		}
	}
	assert.InDelta(t, 500, threes, 60, "layout's default weights are 1:1")
	var zero flags.Snapshot
	assert.False(t, tf.checkout.Enabled(zero, "qa"), "the zero Snapshot gives defaults")

	ev, ok := snap.Evaluate("button-color", "qa")
	require.True(t, ok)
	assert.Equal(t, flags.Evaluation{Kind: flags.KindString, Variant: "green", Value: "#00ff00", Reason: flags.ReasonTargeting}, ev)
	_, ok = snap.Evaluate("nope", "qa")
	assert.False(t, ok)
}

// TestParallelOverrides (acceptance d): 100 parallel subtests, each with
// values of its own, evaluated through the same handler code, each see
// their own values every time.
func TestParallelOverrides(t *testing.T) {
	tf := newTestFlags()
	handler := func(set *flags.Set) http.Handler {
		return set.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			snap, _ := flags.FromContext(r.Context())
			key := r.URL.Query().Get("user")
			fmt.Fprintf(w, "%v %s %v", tf.checkout.Enabled(snap, key), tf.color.Get(snap, key), tf.limit.Get(snap, key))
		}))
	}
	var seen sync.Map
	t.Run("group", func(t *testing.T) {
		for i := range 100 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				on, color := i%2 == 0, []string{"blue", "green"}[i/2%2]
				user := fmt.Sprintf("user-%d", i)
				set := flagstest.New(t, tf.reg, map[string]any{
					"new-checkout": on,
					"button-color": color,
					"page-size":    map[string]any{"allow": map[string][]string{"large": {user}}},
				})
				want := fmt.Sprintf("%v %s %v", on, map[string]string{"blue": "#0000ff", "green": "#00ff00"}[color], 50)
				h := handler(set)
				for range 50 {
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, httptest.NewRequest("GET", "/?user="+user, nil))
					require.Equal(t, want, rec.Body.String())
					runtime.Gosched()
				}
				seen.Store(i, true)
			})
		}
	})
	n := 0
	seen.Range(func(any, any) bool { n++; return true })
	assert.Equal(t, 100, n)
}

func TestExposure(t *testing.T) {
	tf := newTestFlags()
	var mu sync.Mutex
	var got []flags.Exposure
	set := flags.New(tf.reg, "", flags.Options{OnExposure: func(e flags.Exposure) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, e)
	}, ExposureRate: 0.25})
	defer set.Close()
	flagstest.Swap(t, set, map[string]any{"button-color": map[string]any{"weights": map[string]int{"blue": 1, "green": 1}}})
	snap := set.Snapshot()
	defer snap.Release()
	for i := range 4000 {
		tf.color.Get(snap, rolloutKey(i))
		tf.color.Get(snap, rolloutKey(i)) // the same keys again: sampled again
	}
	mu.Lock()
	defer mu.Unlock()
	assert.InDelta(t, 2*1000, len(got), 2*120, "a quarter of the keys, each twice")
	keys := map[string]int{}
	for _, e := range got {
		keys[e.Key]++
		assert.Equal(t, "button-color", e.Flag)
		assert.Equal(t, snap.Seq(), e.Seq)
		assert.Equal(t, flags.ReasonSplit, e.Reason)
		assert.False(t, e.Time.IsZero())
	}
	for k, n := range keys {
		assert.Equal(t, 2, n, k)
	}
}

// TestReloadHistoryRollback: YAML through flagsyaml, a refused file
// naming file, flag and problem, history and rollback as in reload.
func TestReloadHistoryRollback(t *testing.T) {
	tf := newTestFlags()
	dir := t.TempDir()
	path := filepath.Join(dir, "flags.yaml")
	write := func(s string) { require.NoError(t, os.WriteFile(path, []byte(s), 0o644)) }
	var events []reload.Event
	set := flags.New(tf.reg, path, flags.Options{YAML: flagsyaml.ToJSON, OnEvent: func(e reload.Event) { events = append(events, e) }})
	defer func() { assert.NoError(t, set.Close()) }()
	eval := func() (bool, string) {
		snap := set.Snapshot()
		defer snap.Release()
		return tf.checkout.Enabled(snap, "k"), tf.color.Get(snap, "k")
	}

	write("new-checkout: true\nbutton-color:\n  variant: green\n")
	require.NoError(t, set.Reload(t.Context()))
	on, color := eval()
	assert.True(t, on)
	assert.Equal(t, "#00ff00", color)

	write("new-checkout:\n  percent: 101\n")
	err := set.Reload(t.Context())
	require.Error(t, err)
	assert.ErrorIs(t, err, flags.ErrInvalid)
	assert.Contains(t, err.Error(), path)
	assert.Contains(t, err.Error(), `flag "new-checkout": percent 101 is not within 0–100`)
	assert.Equal(t, reload.EventFailure, events[len(events)-1].Kind)
	on, _ = eval()
	assert.True(t, on, "the refused file does not serve")

	write("new-checkout: false\n")
	require.NoError(t, set.Reload(t.Context()))
	on, color = eval()
	assert.False(t, on)
	assert.Equal(t, "#0000ff", color)

	ver, err := set.Value().Rollback()
	require.NoError(t, err)
	assert.Equal(t, uint64(2), ver.Seq)
	on, color = eval()
	assert.True(t, on)
	assert.Equal(t, "#00ff00", color)
	h := set.Value().History()
	require.Len(t, h, 3)
	assert.Equal(t, []uint64{3, 2, 1}, []uint64{h[0].Seq, h[1].Seq, h[2].Seq})
	assert.True(t, h[1].Current)
	assert.Equal(t, "defaults", h[2].ID)

	// Without the YAML hook a YAML file is refused, saying so.
	plain := flags.New(tf.reg, path, flags.Options{})
	defer plain.Close()
	err = plain.Reload(t.Context())
	assert.ErrorIs(t, err, flags.ErrSyntax)
	assert.Contains(t, err.Error(), "Options.YAML")

	noFile := flags.New(tf.reg, "", flags.Options{})
	assert.ErrorIs(t, noFile.Reload(t.Context()), flags.ErrNoFile)
	assert.ErrorIs(t, noFile.Watch(t.Context()), flags.ErrNoFile)
	assert.NoError(t, noFile.Close())
	assert.NoError(t, noFile.Close(), "Close is idempotent")
	assert.ErrorIs(t, noFile.Reload(t.Context()), reload.ErrClosed)
	snap := noFile.Snapshot()
	assert.False(t, tf.checkout.Enabled(snap, "k"), "a closed Set evaluates to defaults")
	snap.Release()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	assert.ErrorIs(t, set.Watch(ctx), context.Canceled)
}

// TestValuesRaw: Raw gives each flag's value as the file set it, compact,
// and nothing for a flag the file leaves at its default.
func TestValuesRaw(t *testing.T) {
	tf := newTestFlags()
	vals, err := flags.Parse(tf.reg, "values.json", []byte(`{"new-checkout": { "percent" : 10 }, "button-color": "green"}`))
	require.NoError(t, err)
	raw, ok := vals.Raw("new-checkout")
	assert.True(t, ok)
	assert.Equal(t, `{"percent":10}`, raw)
	raw, ok = vals.Raw("button-color")
	assert.True(t, ok)
	assert.Equal(t, `"green"`, raw)
	_, ok = vals.Raw("page-size")
	assert.False(t, ok, "a flag at its default")
	set := flags.New(tf.reg, "", flags.Options{})
	defer set.Close()
	snap := set.Snapshot()
	defer snap.Release()
	_, ok = snap.Values().Raw("new-checkout")
	assert.False(t, ok, "the defaults set nothing")
}
