package flags_test

import (
	"bytes"
	"os"
	"os/exec"
	"testing"

	"github.com/handoff-go/handoff/flags/flagstest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// helperEnv makes the test binary print assignments instead of testing.
const helperEnv = "HANDOFF_FLAGS_ASSIGN"

// assignments returns, for each of the rollout keys, one byte: '1' when
// new-checkout is on at 10 %, then 'b' or 'g' for button-color at 50/50.
func assignments(t testing.TB) []byte {
	tf := newTestFlags()
	set := flagstest.New(t, tf.reg, map[string]any{
		"new-checkout": map[string]any{"percent": 10},
		"button-color": map[string]any{"weights": map[string]int{"blue": 50, "green": 50}},
	})
	snap := set.Snapshot()
	defer snap.Release()
	out := make([]byte, 0, 2*rolloutKeys)
	for i := range rolloutKeys {
		k := rolloutKey(i)
		on := byte('0')
		if tf.checkout.Enabled(snap, k) {
			on = '1'
		}
		c, _ := tf.color.Variant(snap, k)
		out = append(out, on, c[0])
	}
	return out
}

// TestHelperAssign is the other process of TestTwoProcessesAgree.
func TestHelperAssign(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("the helper process of TestTwoProcessesAgree")
	}
	os.Stdout.Write(assignments(t))
}

// TestTwoProcessesAgree (acceptance b): two processes, each with its own
// Set loaded from the same values, give every one of 100,000 keys the
// same answers (and so does this one).
func TestTwoProcessesAgree(t *testing.T) {
	if os.Getenv(helperEnv) == "1" {
		t.Skip("in the helper")
	}
	run := func() []byte {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAssign$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"=1")
		out, err := cmd.Output()
		require.NoError(t, err)
		i := bytes.Index(out, []byte("PASS")) // go test's own line after the output
		if i >= 0 {
			out = out[:i]
		}
		require.Len(t, out, 2*rolloutKeys)
		return out
	}
	a, b := run(), run()
	mine := assignments(t)
	differ := 0
	for i := 0; i < len(a); i++ {
		if a[i] != b[i] || a[i] != mine[i] {
			differ++
		}
	}
	on, green := bytes.Count(a, []byte("1")), 0
	for i := 1; i < len(a); i += 2 {
		if a[i] == 'g' {
			green++
		}
	}
	t.Logf("two processes over %d keys: %d answers differ; new-checkout at 10 %%: %.3f %%, green at 50/50: %.3f %%",
		rolloutKeys, differ, 100*float64(on)/rolloutKeys, 100*float64(green)/rolloutKeys)
	assert.Zero(t, differ)
}
