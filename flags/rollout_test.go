package flags_test

import (
	"fmt"
	"testing"

	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/flags/flagstest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const rolloutKeys = 100_000

// rolloutKey is the i-th key of the rollout tests: user ids as a service
// would have them.
func rolloutKey(i int) string { return fmt.Sprintf("user-%d", i) }

// TestRollout (acceptance b): over 100,000 keys a 10 % rollout enables
// 10 % ± 0.5 %, raising it to 20 % keeps every key that had it, and 50/50
// variants give 50 % ± 0.5 %.
func TestRollout(t *testing.T) {
	tf := newTestFlags()
	set := flagstest.New(t, tf.reg, map[string]any{"new-checkout": map[string]any{"percent": 10}})
	snap10 := set.Snapshot()
	defer snap10.Release()
	flagstest.Swap(t, set, map[string]any{
		"new-checkout": map[string]any{"percent": 20},
		"button-color": map[string]any{"weights": map[string]int{"blue": 50, "green": 50}},
	})
	snap20 := set.Snapshot()
	defer snap20.Release()

	on10, on20, lost, green := 0, 0, 0, 0
	for i := range rolloutKeys {
		k := rolloutKey(i)
		a, b := tf.checkout.Enabled(snap10, k), tf.checkout.Enabled(snap20, k)
		if a {
			on10++
		}
		if b {
			on20++
		}
		if a && !b {
			lost++
		}
		if name, _ := tf.color.Variant(snap20, k); name == "green" {
			green++
		}
	}
	pct := func(n int) float64 { return 100 * float64(n) / rolloutKeys }
	t.Logf("10%% rollout: %.3f %%; 20%%: %.3f %%; keys lost when raising: %d; 50/50 green: %.3f %%", pct(on10), pct(on20), lost, pct(green))
	assert.InDelta(t, 10, pct(on10), 0.5)
	assert.InDelta(t, 20, pct(on20), 0.5)
	assert.Zero(t, lost, "keys enabled at 10 % but not at 20 %")
	assert.InDelta(t, 50, pct(green), 0.5)
}

// TestWeightsMoveOnlyWhatTheyMust: 50/50 to 40/60 moves the keys of
// the 10 % between the two variants, and no other.
func TestWeightsMoveOnlyWhatTheyMust(t *testing.T) {
	tf := newTestFlags()
	a := flagstest.New(t, tf.reg, map[string]any{"button-color": map[string]any{"weights": map[string]int{"blue": 50, "green": 50}}})
	b := flagstest.New(t, tf.reg, map[string]any{"button-color": map[string]any{"weights": map[string]int{"blue": 40, "green": 60}}})
	sa, sb := a.Snapshot(), b.Snapshot()
	defer sa.Release()
	defer sb.Release()
	moved, wrongWay := 0, 0
	for i := range rolloutKeys {
		k := rolloutKey(i)
		va, _ := tf.color.Variant(sa, k)
		vb, _ := tf.color.Variant(sb, k)
		if va != vb {
			moved++
			if va != "blue" {
				wrongWay++
			}
		}
	}
	t.Logf("moved %.3f %% of keys", 100*float64(moved)/rolloutKeys)
	assert.InDelta(t, 10, 100*float64(moved)/rolloutKeys, 0.5)
	assert.Zero(t, wrongWay, "keys moved from green to blue")
}

// TestDocumentedAssignment holds the example of the package
// documentation, computed there by hand from the published algorithm.
func TestDocumentedAssignment(t *testing.T) {
	assert.Equal(t, 1645, flags.Bucket("new-checkout", "user-7"))
	assert.Equal(t, 10097, flags.Bucket("new-checkout", "alice"))
	assert.Equal(t, 50527, flags.Bucket("button-color", "alice"))
	assert.Equal(t, 21529, flags.Bucket("button-color", "bob"))
	assert.Equal(t, uint64(0xd3dbb86c24b7556d), fmix64(fnv1a("new-checkout\x00user-7")))
	assert.Equal(t, uint64(0xf4529c24cf120f07), fnv1a("new-checkout\x00user-7"))

	tf := newTestFlags()
	for _, c := range []struct {
		percent float64
		key     string
		want    bool
	}{{2, "user-7", true}, {1, "user-7", false}, {10, "alice", false}, {10.1, "alice", true}} {
		set := flagstest.New(t, tf.reg, map[string]any{"new-checkout": map[string]any{"percent": c.percent}})
		snap := set.Snapshot()
		assert.Equal(t, c.want, tf.checkout.Enabled(snap, c.key), "%v %% %s", c.percent, c.key)
		snap.Release()
	}
	set := flagstest.New(t, tf.reg, map[string]any{"button-color": map[string]any{"weights": map[string]int{"blue": 1, "green": 1}}})
	snap := set.Snapshot()
	defer snap.Release()
	for key, want := range map[string]string{"alice": "green", "bob": "blue"} {
		got, _ := tf.color.Variant(snap, key)
		assert.Equal(t, want, got, key)
	}
}

// fnv1a and fmix64 are the documentation's algorithm, written again from
// the text.
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range []byte(s) {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// TestBucketMatchesDocumentation: over many keys, Bucket is the
// documentation's algorithm.
func TestBucketMatchesDocumentation(t *testing.T) {
	for i := range 10_000 {
		k := rolloutKey(i)
		require.Equal(t, int(fmix64(fnv1a("layout\x00"+k))%100000), flags.Bucket("layout", k), k)
	}
}
