package ofprovider_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/handoff-go/handoff/flags/flagstest"
	"github.com/handoff-go/handoff/flags/ofprovider"
	"github.com/open-feature/go-sdk/openfeature"
	"github.com/open-feature/go-sdk/openfeature/memprovider"
)

// The in-memory provider is the
// go-sdk's, with the same flags (it has no percentage rollout: its
// boolean is static, its variant chosen by a context evaluator that
// hashes nothing, so it does less work than ours).

var (
	sinkBool   bool
	sinkString string
)

func memory() memprovider.InMemoryProvider {
	return memprovider.NewInMemoryProvider(map[string]memprovider.InMemoryFlag{
		"new-checkout": {Key: "new-checkout", State: memprovider.Enabled, DefaultVariant: "on",
			Variants: map[string]any{"on": true, "off": false}},
		"button-color": {Key: "button-color", State: memprovider.Enabled, DefaultVariant: "blue",
			Variants: map[string]any{"blue": "#0000ff", "green": "#00ff00"}},
	})
}

// BenchmarkAcceptance is acceptance e in one benchmark, so that -count
// interleaves its cases: a bare atomic load (the limit), the typed
// handles (a boolean with a key in a 10 % rollout, with the request's
// Snapshot and with one taken for the evaluation; a 50/50 variant), and
// the same flags through OpenFeature: the client with our provider and
// with the go-sdk's in-memory one, and the providers called directly.
//
//	go test -run '^$' -bench Acceptance -count 5 ./flags/ofprovider/
func BenchmarkAcceptance(b *testing.B) {
	tf := newTestFlags()
	set := flagstest.New(b, tf.reg, map[string]any{
		"new-checkout": map[string]any{"percent": 10},
		"button-color": map[string]any{"weights": map[string]int{"blue": 50, "green": 50}},
	})
	ours := client(b, ofprovider.New(set))
	theirs := client(b, memory())
	provider := ofprovider.New(set)
	mem := memory()
	ctx := context.Background()
	evalCtx := openfeature.NewEvaluationContext("user-4711", nil)
	flat := openfeature.FlattenedContext{openfeature.TargetingKey: "user-4711"}
	snap := set.Snapshot()
	defer snap.Release()
	var limit atomic.Bool
	limit.Store(true)

	const key = "user-4711"
	// Each case is its own loop (no closure call in the way).
	b.Run("atomic-load", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkBool = limit.Load()
		}
	})
	b.Run("bool", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkBool = tf.checkout.Enabled(snap, key)
		}
	})
	b.Run("bool-own-snapshot", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s := set.Snapshot()
			sinkBool = tf.checkout.Enabled(s, key)
			s.Release()
		}
	})
	b.Run("variant", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkString = tf.color.Get(snap, key)
		}
	})
	b.Run("openfeature-client-bool-handoff", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkBool, _ = ours.BooleanValue(ctx, "new-checkout", false, evalCtx)
		}
	})
	b.Run("openfeature-client-bool-memory", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkBool, _ = theirs.BooleanValue(ctx, "new-checkout", false, evalCtx)
		}
	})
	b.Run("openfeature-client-variant-handoff", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkString, _ = ours.StringValue(ctx, "button-color", "", evalCtx)
		}
	})
	b.Run("openfeature-client-variant-memory", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkString, _ = theirs.StringValue(ctx, "button-color", "", evalCtx)
		}
	})
	b.Run("openfeature-provider-bool-handoff", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkBool = provider.BooleanEvaluation(ctx, "new-checkout", false, flat).Value
		}
	})
	b.Run("openfeature-provider-bool-memory", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkBool = mem.BooleanEvaluation(ctx, "new-checkout", false, flat).Value
		}
	})
	b.Run("openfeature-provider-variant-handoff", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkString = provider.StringEvaluation(ctx, "button-color", "", flat).Value
		}
	})
	b.Run("openfeature-provider-variant-memory", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			sinkString = mem.StringEvaluation(ctx, "button-color", "", flat).Value
		}
	})
}
