package flags_test

import (
	"sync/atomic"
	"testing"

	"github.com/handoff-go/handoff/flags/flagstest"
)

// The benchmarks of acceptance e (with flags/ofprovider's, which adds the
// OpenFeature cases): run them together, interleaved, with
// `go test -run '^$' -bench . -count 5 ./flags/ ./flags/ofprovider/`.

var sinkBool bool
var sinkString string

// BenchmarkAtomicLoad is the limit: a bare atomic load of a bool.
func BenchmarkAtomicLoad(b *testing.B) {
	var v atomic.Bool
	v.Store(true)
	b.ReportAllocs()
	for b.Loop() {
		sinkBool = v.Load()
	}
}

// BenchmarkBool is a boolean with a key, in a 10 % rollout, through a
// Snapshot the request already holds.
func BenchmarkBool(b *testing.B) {
	tf := newTestFlags()
	set := flagstest.New(b, tf.reg, map[string]any{"new-checkout": map[string]any{"percent": 10}})
	snap := set.Snapshot()
	defer snap.Release()
	b.ReportAllocs()
	for b.Loop() {
		sinkBool = tf.checkout.Enabled(snap, "user-4711")
	}
}

// BenchmarkBoolSnapshot is the same with a Snapshot taken and released
// around each evaluation: a request that evaluates one flag.
func BenchmarkBoolSnapshot(b *testing.B) {
	tf := newTestFlags()
	set := flagstest.New(b, tf.reg, map[string]any{"new-checkout": map[string]any{"percent": 10}})
	b.ReportAllocs()
	for b.Loop() {
		snap := set.Snapshot()
		sinkBool = tf.checkout.Enabled(snap, "user-4711")
		snap.Release()
	}
}

// BenchmarkVariant is a 50/50 string variant with a key.
func BenchmarkVariant(b *testing.B) {
	tf := newTestFlags()
	set := flagstest.New(b, tf.reg, map[string]any{"button-color": map[string]any{"weights": map[string]int{"blue": 50, "green": 50}}})
	snap := set.Snapshot()
	defer snap.Release()
	b.ReportAllocs()
	for b.Loop() {
		sinkString = tf.color.Get(snap, "user-4711")
	}
}
