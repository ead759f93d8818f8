package flagstest_test

import (
	"fmt"
	"testing"

	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/flags/flagstest"
)

var registry flags.Registry

var newCheckout = registry.Bool(flags.Def{
	Name: "new-checkout", Description: "the one-page checkout", Owner: "team-payments", RemoveBy: "2099-03-31",
}, false)

// checkout is the code under test: it gets its flags from the Set it is given.
func checkout(set *flags.Set, user string) string {
	snap := set.Snapshot()
	defer snap.Release()
	if newCheckout.Enabled(snap, user) {
		return "one page"
	}
	return "three steps"
}

// Each test, parallel or not, has a Set of its own with its values.
func ExampleNew() {
	t := &testing.T{} // in a test: the test's t
	on := flagstest.New(t, &registry, map[string]any{"new-checkout": true})
	off := flagstest.New(t, &registry, map[string]any{"new-checkout": map[string]any{"deny": []string{"bob"}, "on": true}})
	fmt.Println(checkout(on, "bob"), "/", checkout(off, "bob"))
	// Output: one page / three steps
}

// Put this in the package that registers the flags: the suite fails, naming
// the flag and its owner, the day after a flag should have been removed.
func ExampleNoExpired() {
	var t testing.T // in a test: func TestNoExpiredFlags(t *testing.T)
	flagstest.NoExpired(&t, &registry)
	fmt.Println("failed:", t.Failed())
	// Output: failed: false
}
