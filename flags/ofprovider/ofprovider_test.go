package ofprovider_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/flags/flagstest"
	"github.com/handoff-go/handoff/flags/ofprovider"
	"github.com/open-feature/go-sdk/openfeature"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// shutdown runs the tests, then OpenFeature's Shutdown, which ends the
// providers' goroutines, before goleak looks.
type shutdown struct{ m *testing.M }

func (s shutdown) Run() int {
	code := s.m.Run()
	openfeature.Shutdown()
	return code
}

func TestMain(m *testing.M) {
	// The go-sdk's event executor reads its channel for the life of the
	// process (Shutdown makes a new executor and leaves the old reader):
	// the SDK's, not ours. (Its name depends on inlining, which -race
	// changes.)
	goleak.VerifyTestMain(shutdown{m},
		goleak.IgnoreTopFunction("github.com/open-feature/go-sdk/openfeature.(*eventExecutor).startEventListener.func1.1"),
		goleak.IgnoreTopFunction("github.com/open-feature/go-sdk/openfeature.newEventExecutor.(*eventExecutor).startEventListener.func1.1"))
}

type layout struct{ Columns int }

type testFlags struct {
	reg      *flags.Registry
	checkout *flags.Bool
	color    *flags.Variants[string]
	size     *flags.Variants[float64]
	layout   *flags.Variants[layout]
}

func newTestFlags() *testFlags {
	reg := &flags.Registry{}
	def := func(name string) flags.Def {
		return flags.Def{Name: name, Description: name, Owner: "test", RemoveBy: "2099-12-31"}
	}
	return &testFlags{
		reg:      reg,
		checkout: reg.Bool(def("new-checkout"), false),
		color: reg.String(def("button-color"), "blue",
			flags.Variant[string]{Name: "blue", Value: "#0000ff"}, flags.Variant[string]{Name: "green", Value: "#00ff00"}),
		size: reg.Number(def("page-size"), "small",
			flags.Variant[float64]{Name: "small", Value: 20}, flags.Variant[float64]{Name: "odd", Value: 2.5}),
		layout: flags.Object(reg, def("layout"), "two",
			flags.Variant[layout]{Name: "two", Value: layout{2}}, flags.Variant[layout]{Name: "three", Value: layout{3}}),
	}
}

var domains atomic.Int64

// client sets p as the provider of a domain of its own and returns a
// client of it.
func client(t testing.TB, p openfeature.FeatureProvider) *openfeature.Client {
	domain := fmt.Sprintf("test-%d", domains.Add(1))
	require.NoError(t, openfeature.SetNamedProviderAndWait(domain, p))
	return openfeature.NewClient(domain)
}

func TestEvaluations(t *testing.T) {
	tf := newTestFlags()
	set := flagstest.New(t, tf.reg, map[string]any{
		"new-checkout": map[string]any{"percent": 10, "rules": []any{map[string]any{"attribute": "country", "values": []string{"FR"}, "on": true}}},
		"button-color": map[string]any{"weights": map[string]int{"blue": 1, "green": 1}},
		"page-size":    "odd",
		"layout":       "three",
	})
	c := client(t, ofprovider.New(set))
	ctx := context.Background()

	// The same answers as the typed handles, key by key.
	snap := set.Snapshot()
	defer snap.Release()
	for i := range 200 {
		key := fmt.Sprintf("user-%d", i)
		on, err := c.BooleanValue(ctx, "new-checkout", false, openfeature.NewEvaluationContext(key, nil))
		require.NoError(t, err)
		assert.Equal(t, tf.checkout.Enabled(snap, key), on, key)
		color, err := c.StringValue(ctx, "button-color", "", openfeature.NewEvaluationContext(key, nil))
		require.NoError(t, err)
		assert.Equal(t, tf.color.Get(snap, key), color, key)
	}
	d, err := c.BooleanValueDetails(ctx, "new-checkout", false, openfeature.NewEvaluationContext("user-1", map[string]any{"country": "FR"}))
	require.NoError(t, err)
	assert.True(t, d.Value)
	assert.Equal(t, openfeature.TargetingMatchReason, d.Reason)
	assert.Equal(t, "on", d.Variant)

	f, err := c.FloatValue(ctx, "page-size", 0, openfeature.NewEvaluationContext("k", nil))
	require.NoError(t, err)
	assert.Equal(t, 2.5, f)
	_, err = c.IntValue(ctx, "page-size", 7, openfeature.NewEvaluationContext("k", nil))
	assert.ErrorContains(t, err, "TYPE_MISMATCH", "2.5 is not an int")
	o, err := c.ObjectValue(ctx, "layout", nil, openfeature.NewEvaluationContext("k", nil))
	require.NoError(t, err)
	assert.Equal(t, layout{3}, o)

	v, err := c.BooleanValue(ctx, "old-checkout", true, openfeature.NewEvaluationContext("k", nil))
	assert.True(t, v, "the default")
	assert.ErrorContains(t, err, "FLAG_NOT_FOUND")
	s, err := c.StringValue(ctx, "new-checkout", "x", openfeature.NewEvaluationContext("k", nil))
	assert.Equal(t, "x", s)
	assert.ErrorContains(t, err, "TYPE_MISMATCH")
}

// TestOneVersionPerRequest: with a Snapshot in the context, every
// evaluation sees its version, whatever swaps meanwhile.
func TestOneVersionPerRequest(t *testing.T) {
	tf := newTestFlags()
	set := flagstest.New(t, tf.reg, map[string]any{"new-checkout": false})
	c := client(t, ofprovider.New(set))
	snap := set.Snapshot()
	defer snap.Release()
	ctx := flags.NewContext(context.Background(), snap)
	flagstest.Swap(t, set, map[string]any{"new-checkout": true})
	on, err := c.BooleanValue(ctx, "new-checkout", false, openfeature.EvaluationContext{})
	require.NoError(t, err)
	assert.False(t, on, "the request's version")
	on, err = c.BooleanValue(context.Background(), "new-checkout", false, openfeature.EvaluationContext{})
	require.NoError(t, err)
	assert.True(t, on, "the current version")
}

// TestChangeEvents: each swap is a PROVIDER_CONFIGURATION_CHANGED event
// listing the flags that changed.
func TestChangeEvents(t *testing.T) {
	tf := newTestFlags()
	set := flagstest.New(t, tf.reg, nil)
	c := client(t, ofprovider.New(set))
	got := make(chan openfeature.EventDetails, 4)
	cb := func(d openfeature.EventDetails) { got <- d }
	c.AddHandler(openfeature.ProviderConfigChange, &cb)
	defer c.RemoveHandler(openfeature.ProviderConfigChange, &cb)

	flagstest.Swap(t, set, map[string]any{"new-checkout": true, "layout": "two"})
	select {
	case d := <-got:
		assert.Equal(t, []string{"layout", "new-checkout"}, d.FlagChanges)
		assert.Equal(t, ofprovider.Name, d.ProviderName)
	case <-time.After(10 * time.Second):
		t.Fatal("no change event")
	}
	flagstest.Swap(t, set, map[string]any{"new-checkout": true, "layout": "three"})
	select {
	case d := <-got:
		assert.Equal(t, []string{"layout"}, d.FlagChanges)
	case <-time.After(10 * time.Second):
		t.Fatal("no change event")
	}
}
