// Package flagstest helps test code that evaluates flags: a Set of its
// own per test, with the values the test chooses (safe with t.Parallel:
// nothing is global), and a check that fails once a flag is past its
// removal date.
package flagstest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/reload"
)

// New returns a Set of reg's flags with values, closed when the test ends.
// values are what a values file says, by flag name: true, false,
// map[string]any{"percent": 10}, "green" (a variant),
// map[string]any{"weights": map[string]int{"a": 1, "b": 1}}, ... Flags it
// does not name have their defaults. Values that a file could not give
// (an unknown flag, the wrong kind) fail the test at once.
//
// Each call makes a Set of its own, so tests running in parallel with
// different values never see each other's: hand the Set (or its
// Snapshots) to the code under test.
func New(t testing.TB, reg *flags.Registry, values map[string]any) *flags.Set {
	t.Helper()
	set := flags.New(reg, "", flags.Options{})
	t.Cleanup(func() { _ = set.Close() })
	if len(values) > 0 {
		Swap(t, set, values)
	}
	return set
}

// Swap replaces set's values with values (as New takes them), as a
// change of the values file would: Snapshots taken before keep the old
// values.
func Swap(t testing.TB, set *flags.Set, values map[string]any) {
	t.Helper()
	data, err := json.Marshal(values)
	if err != nil {
		t.Fatalf("flagstest: values: %v", err)
	}
	vals, err := flags.Parse(set.Registry(), t.Name(), data)
	if err != nil {
		t.Fatalf("flagstest: %v", err)
	}
	if _, err := set.Value().Swap(vals, reload.Info{ID: vals.ID(), Source: t.Name()}); err != nil {
		t.Fatalf("flagstest: %v", err)
	}
}

// NoExpired fails t for each flag of reg past its removal date today:
// put it in a test of the package that registers the flags, and the test
// suite fails the day after a flag should have been removed, naming it
// and its owner.
func NoExpired(t testing.TB, reg *flags.Registry) {
	t.Helper()
	noExpired(t, reg, time.Now())
}

func noExpired(t testing.TB, reg *flags.Registry, now time.Time) {
	t.Helper()
	for _, f := range reg.Expired(now) {
		t.Errorf("flag %q expired on %s: remove it and the code it guards (owner: %s)", f.Name, f.RemoveBy, f.Owner)
	}
}
