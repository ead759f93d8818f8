package flagstest

import (
	"fmt"
	"testing"
	"time"

	"github.com/handoff-go/handoff/flags"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recorder is a testing.TB that records the failures it is told.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestNoExpired(t *testing.T) {
	var reg flags.Registry
	reg.Bool(flags.Def{Name: "old", Description: "d", Owner: "team-web", RemoveBy: "2026-03-31"}, false)
	reg.Bool(flags.Def{Name: "new", Description: "d", Owner: "team-web", RemoveBy: "2026-12-31"}, false)

	r := &recorder{TB: t}
	noExpired(r, &reg, time.Date(2026, 3, 31, 23, 59, 0, 0, time.UTC))
	assert.Empty(t, r.errors, "the removal date itself is not past")

	noExpired(r, &reg, time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC))
	assert.Equal(t, []string{`flag "old" expired on 2026-03-31: remove it and the code it guards (owner: team-web)`}, r.errors)
}

func TestNewAndSwap(t *testing.T) {
	var reg flags.Registry
	b := reg.Bool(flags.Def{Name: "b", Description: "d", Owner: "o", RemoveBy: "2099-01-01"}, false)
	set := New(t, &reg, map[string]any{"b": true})
	snap := set.Snapshot()
	defer snap.Release()
	assert.True(t, b.Enabled(snap, "k"))
	Swap(t, set, map[string]any{"b": map[string]any{"percent": 0}})
	later := set.Snapshot()
	defer later.Release()
	assert.False(t, b.Enabled(later, "k"))
	assert.True(t, b.Enabled(snap, "k"), "an earlier Snapshot keeps its values")

	r := &fatalRecorder{TB: t}
	func() {
		defer func() { _ = recover() }()
		New(r, &reg, map[string]any{"nope": true})
	}()
	require.Len(t, r.fatals, 1)
	assert.Contains(t, r.fatals[0], `flag "nope": not registered`)
}

// fatalRecorder records Fatalf and stops the caller, as testing's does.
type fatalRecorder struct {
	testing.TB
	fatals []string
}

func (r *fatalRecorder) Helper()          {}
func (r *fatalRecorder) Cleanup(f func()) { r.TB.Cleanup(f) }
func (r *fatalRecorder) Name() string     { return r.TB.Name() }
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
	panic("fatal")
}
