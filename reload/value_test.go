package reload_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/reload"
)

// item is a value that knows whether it has been released, so readers can
// check they never see a released value.
type item struct {
	n        int
	released atomic.Int32
}

func newItemValue(t *testing.T, opts reload.Options[*item]) *reload.Value[*item] {
	t.Helper()
	userRelease := opts.Release
	opts.Release = func(it *item) {
		if it.released.Add(1) != 1 {
			assert.Fail(t, "released twice", "item %d", it.n)
		}
		if userRelease != nil {
			userRelease(it)
		}
	}
	v := reload.New(opts)
	t.Cleanup(v.Close)
	return v
}

func TestZeroBeforeFirstSwap(t *testing.T) {
	v := reload.New(reload.Options[int]{})
	defer v.Close()
	l, ok := v.Acquire()
	assert.False(t, ok)
	assert.Nil(t, l.Version())
	assert.Equal(t, 0, l.Value())
	l.Release() // zero lease: no-op
	assert.Nil(t, v.Current())
}

func TestLeaseKeepsReplacedVersion(t *testing.T) {
	v := newItemValue(t, reload.Options[*item]{})
	a, b := &item{n: 1}, &item{n: 2}
	ver1, err := v.Swap(a, reload.Info{ID: "a", Source: "test"})
	require.NoError(t, err)
	assert.Equal(t, uint64(1), ver1.Seq)
	assert.True(t, ver1.ReplacedAt().IsZero())

	l, ok := v.Acquire()
	require.True(t, ok)
	assert.Same(t, a, l.Value())
	assert.Same(t, ver1, l.Version())

	ver2, err := v.Swap(b, reload.Info{ID: "b"})
	require.NoError(t, err)
	assert.Equal(t, uint64(2), ver2.Seq)
	assert.Same(t, ver2, v.Current())
	assert.False(t, ver1.ReplacedAt().IsZero())

	// The lease still sees version 1, which is not released yet.
	assert.Same(t, a, l.Value())
	assert.Zero(t, a.released.Load())
	assert.False(t, ver1.Released())

	l2, ok := v.Acquire()
	require.True(t, ok)
	assert.Same(t, b, l2.Value())
	l2.Release()

	l.Release()
	assert.Equal(t, int32(1), a.released.Load())
	assert.True(t, ver1.Released())
	assert.Zero(t, b.released.Load())
}

func TestReplacedWithoutLeasesReleasedAtOnce(t *testing.T) {
	v := newItemValue(t, reload.Options[*item]{})
	a := &item{n: 1}
	_, err := v.Swap(a, reload.Info{})
	require.NoError(t, err)
	_, err = v.Swap(&item{n: 2}, reload.Info{})
	require.NoError(t, err)
	assert.Equal(t, int32(1), a.released.Load())
}

func TestValidateFailureKeepsCurrent(t *testing.T) {
	var events []reload.Event
	bad := errors.New("negative")
	v := reload.New(reload.Options[int]{
		Validate: func(n int) error {
			if n < 0 {
				return bad
			}
			return nil
		},
		OnEvent: func(e reload.Event) { events = append(events, e) },
	})
	defer v.Close()
	_, err := v.Swap(1, reload.Info{ID: "one"})
	require.NoError(t, err)
	_, err = v.Swap(-1, reload.Info{ID: "minus", Source: "cfg.json"})
	require.ErrorIs(t, err, bad)
	assert.Contains(t, err.Error(), "cfg.json")

	l, ok := v.Acquire()
	require.True(t, ok)
	assert.Equal(t, 1, l.Value())
	l.Release()
	require.Len(t, events, 2)
	assert.Equal(t, reload.EventSwap, events[0].Kind)
	assert.Equal(t, reload.EventFailure, events[1].Kind)
	assert.Equal(t, uint64(1), events[1].Previous)
	assert.ErrorIs(t, events[1].Err, bad)
}

func TestLoad(t *testing.T) {
	var released []int
	v := reload.New(reload.Options[int]{
		Validate: func(n int) error {
			if n < 0 {
				return errors.New("negative")
			}
			return nil
		},
		Release: func(n int) { released = append(released, n) },
	})
	defer v.Close()
	load := func(n int, id string, err error) reload.Loader[int] {
		return func(context.Context) (int, reload.Info, error) {
			return n, reload.Info{ID: id, Source: "src"}, err
		}
	}
	ctx := context.Background()
	ver, err := v.Load(ctx, load(1, "h1", nil))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), ver.Seq)

	// Same ID: unchanged, the loaded value is handed to Release.
	ver, err = v.Load(ctx, load(10, "h1", nil))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), ver.Seq)
	assert.Equal(t, []int{10}, released)

	// Failing loader: error names the source, current kept.
	_, err = v.Load(ctx, load(0, "", errors.New("disk on fire")))
	require.ErrorContains(t, err, "src")
	require.ErrorContains(t, err, "disk on fire")
	assert.Equal(t, uint64(1), v.Current().Seq)

	// Failing validation: value released, current kept.
	_, err = v.Load(ctx, load(-5, "h2", nil))
	require.ErrorContains(t, err, "negative")
	assert.Equal(t, []int{10, -5}, released)
	assert.Equal(t, uint64(1), v.Current().Seq)

	ver, err = v.Load(ctx, load(2, "h3", nil))
	require.NoError(t, err)
	assert.Equal(t, uint64(2), ver.Seq)
	assert.Equal(t, []int{10, -5, 1}, released)
}

func TestCloseReleasesAfterLastLease(t *testing.T) {
	v := newItemValue(t, reload.Options[*item]{})
	a := &item{n: 1}
	_, err := v.Swap(a, reload.Info{})
	require.NoError(t, err)
	l, ok := v.Acquire()
	require.True(t, ok)

	v.Close()
	v.Close() // idempotent
	_, ok = v.Acquire()
	assert.False(t, ok)
	_, err = v.Swap(&item{}, reload.Info{})
	assert.ErrorIs(t, err, reload.ErrClosed)
	_, err = v.Load(context.Background(), func(context.Context) (*item, reload.Info, error) { return nil, reload.Info{}, nil })
	assert.ErrorIs(t, err, reload.ErrClosed)
	assert.False(t, isClosed(v.Done()), "Done before the last lease ended")
	assert.Zero(t, a.released.Load())
	l.Release()
	assert.Equal(t, int32(1), a.released.Load())
	assert.True(t, isClosed(v.Done()), "Done not closed after the last release")
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestRetainFor: versions replaced within RetainFor stay retained however
// many swaps follow (up to MaxRetainedFor), and go at the first swap after
// their time is up, down to the Retain most recent.
func TestRetainFor(t *testing.T) {
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	v := newItemValue(t, reload.Options[*item]{Retain: 1, RetainFor: time.Minute})
	reload.SetClock(v, func() time.Time { return now })
	var items []*item
	swap := func() {
		t.Helper()
		it := &item{n: len(items) + 1}
		items = append(items, it)
		_, err := v.Swap(it, reload.Info{ID: fmt.Sprint(it.n)})
		require.NoError(t, err)
	}
	for range 10 { // a burst: ten swaps in the same second
		swap()
	}
	for i := range 9 {
		l, ok := v.AcquirePrevious(i)
		require.True(t, ok, "replaced version %d is within RetainFor", 9-i)
		assert.Same(t, items[8-i], l.Value())
		l.Release()
	}
	for _, it := range items {
		assert.Zero(t, it.released.Load(), "item %d", it.n)
	}

	now = now.Add(time.Minute)
	swap() // 10 is replaced now; 1-9 are a minute old: only Retain keeps one
	_, ok := v.AcquirePrevious(1)
	assert.False(t, ok)
	l, ok := v.AcquirePrevious(0)
	require.True(t, ok)
	assert.Same(t, items[9], l.Value())
	l.Release()
	for _, it := range items[:9] {
		assert.Equal(t, int32(1), it.released.Load(), "item %d released", it.n)
	}

	// A burst longer than MaxRetainedFor keeps MaxRetainedFor versions.
	for range 2 * reload.MaxRetainedFor {
		swap()
	}
	assert.Equal(t, reload.MaxRetainedFor, retained(v))

	// Rollback keeps the version it rolls away from, and the window too.
	cur := v.Current()
	_, err := v.Rollback()
	require.NoError(t, err)
	l, ok = v.AcquirePrevious(0)
	require.True(t, ok)
	assert.Same(t, cur, l.Version())
	l.Release()
	assert.Equal(t, reload.MaxRetainedFor, retained(v))
}

// retained counts the retained versions of v.
func retained[T any](v *reload.Value[T]) int {
	n := 0
	for ; ; n++ {
		l, ok := v.AcquirePrevious(n)
		if !ok {
			return n
		}
		l.Release()
	}
}

// TestZeroMeansDefaultNegativeMeansNone: the Options convention.
func TestZeroMeansDefaultNegativeMeansNone(t *testing.T) {
	for _, c := range []struct {
		opts              reload.Options[int]
		history, retained int
	}{
		{reload.Options[int]{}, reload.DefaultHistory, reload.DefaultRetain},
		{reload.Options[int]{History: -1, Retain: -1, RetainFor: -1}, 0, 0},
		{reload.Options[int]{History: 2, Retain: 3}, 2, 3},
	} {
		v := reload.New(c.opts)
		for i := range 20 {
			_, err := v.Swap(i, reload.Info{})
			require.NoError(t, err)
		}
		assert.Len(t, v.History(), c.history, "%+v", c.opts)
		assert.Equal(t, c.retained, retained(v), "%+v", c.opts)
		v.Close()
	}
}

func TestRollback(t *testing.T) {
	var events []reload.Event
	v := newItemValue(t, reload.Options[*item]{
		Retain:  2,
		OnEvent: func(e reload.Event) { events = append(events, e) },
	})
	_, err := v.Rollback()
	require.ErrorIs(t, err, reload.ErrNotRetained)

	items := []*item{{n: 1}, {n: 2}, {n: 3}, {n: 4}}
	for i, it := range items {
		_, err := v.Swap(it, reload.Info{ID: fmt.Sprint("id", i+1)})
		require.NoError(t, err)
	}
	// Retain 2: version 1 released, 2 and 3 kept.
	assert.Equal(t, int32(1), items[0].released.Load())
	assert.Zero(t, items[1].released.Load())
	assert.Zero(t, items[2].released.Load())

	prev, ok := v.AcquirePrevious(0)
	require.True(t, ok)
	assert.Same(t, items[2], prev.Value())
	prev.Release()
	_, ok = v.AcquirePrevious(2)
	assert.False(t, ok)

	ver, err := v.Rollback()
	require.NoError(t, err)
	assert.Equal(t, uint64(3), ver.Seq)
	assert.Equal(t, "id3", ver.ID)
	l, ok := v.Acquire()
	require.True(t, ok)
	assert.Same(t, items[2], l.Value())
	l.Release()
	assert.Equal(t, reload.EventRollback, events[len(events)-1].Kind)
	assert.Equal(t, uint64(4), events[len(events)-1].Previous)

	// Rolling back again rolls forward to 4.
	ver, err = v.Rollback()
	require.NoError(t, err)
	assert.Equal(t, uint64(4), ver.Seq)

	ver, err = v.RollbackTo(2)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), ver.Seq)
	_, err = v.RollbackTo(1)
	require.ErrorIs(t, err, reload.ErrNotRetained)
	assert.Contains(t, err.Error(), "version 1")

	h := v.History()
	require.Len(t, h, 4)
	assert.Equal(t, uint64(4), h[0].Seq)
	assert.Equal(t, uint64(1), h[3].Seq)
	assert.True(t, h[3].Released)
	assert.True(t, h[2].Current) // seq 2
	assert.True(t, h[0].Retained)
	assert.False(t, h[2].LoadedAt.IsZero())
	for _, it := range items[1:] {
		assert.Zero(t, it.released.Load(), "item %d", it.n)
	}
}

func TestHistoryBounded(t *testing.T) {
	v := reload.New(reload.Options[int]{History: 3})
	defer v.Close()
	for i := range 10 {
		_, err := v.Swap(i, reload.Info{ID: fmt.Sprint(i), Source: "s"})
		require.NoError(t, err)
	}
	h := v.History()
	require.Len(t, h, 3)
	assert.Equal(t, []uint64{10, 9, 8}, []uint64{h[0].Seq, h[1].Seq, h[2].Seq})
	assert.Equal(t, "9", h[0].ID)
	assert.True(t, h[0].Current)
	assert.True(t, h[1].Released)
}

// TestConcurrentReadersAndSwaps checks, under the race detector, that a
// reader never sees a released value and that every version is released
// exactly once.
func TestConcurrentReadersAndSwaps(t *testing.T) {
	var releases atomic.Int64
	v := reload.New(reload.Options[*item]{
		Retain: 1,
		Release: func(it *item) {
			if it.released.Add(1) != 1 {
				assert.Fail(t, "released twice", "item %d", it.n)
			}
			releases.Add(1)
		},
	})
	_, err := v.Swap(&item{n: 0}, reload.Info{})
	require.NoError(t, err)

	const swaps = 500
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1_000_000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				l, ok := v.Acquire()
				if !ok {
					assert.Fail(t, "Acquire failed while open")
					return
				}
				if l.Value().released.Load() != 0 {
					assert.Fail(t, "lease on a released item", "item %d", l.Value().n)
				}
				if p, ok := v.AcquirePrevious(0); ok {
					if p.Value().released.Load() != 0 {
						assert.Fail(t, "lease on a released previous item", "item %d", p.Value().n)
					}
					p.Release()
				}
				l.Release()
			}
		}()
	}
	for i := 1; i <= swaps; i++ {
		_, err := v.Swap(&item{n: i}, reload.Info{})
		require.NoError(t, err)
		if i%50 == 0 {
			_, err := v.Rollback()
			require.NoError(t, err)
		}
	}
	close(stop)
	wg.Wait()
	v.Close()
	// Every lease has ended: Close released everything before it returned.
	assert.True(t, isClosed(v.Done()), "versions not all released after Close")
	assert.Equal(t, int64(swaps+1), releases.Load())
}

func TestAcquireReleaseAllocatesNothing(t *testing.T) {
	v := reload.New(reload.Options[*item]{Retain: 1})
	defer v.Close()
	_, _ = v.Swap(&item{n: 1}, reload.Info{})
	_, _ = v.Swap(&item{n: 2}, reload.Info{})
	allocs := testing.AllocsPerRun(1000, func() {
		l, _ := v.Acquire()
		_ = l.Value()
		_ = l.Version().Seq
		l.Release()
		p, _ := v.AcquirePrevious(0)
		p.Release()
	})
	assert.Zero(t, allocs)
}

func TestDoubleReleasePanics(t *testing.T) {
	v := reload.New(reload.Options[int]{})
	_, _ = v.Swap(1, reload.Info{})
	l, _ := v.Acquire()
	l.Release()
	v.Close() // count now 0: version released
	assert.Panics(t, l.Release)
}

func BenchmarkAcquireRelease(b *testing.B) {
	v := reload.New(reload.Options[*item]{})
	defer v.Close()
	_, _ = v.Swap(&item{n: 1}, reload.Info{})
	b.ReportAllocs()
	for b.Loop() {
		l, _ := v.Acquire()
		_ = l.Value()
		l.Release()
	}
}

func BenchmarkAcquireReleaseParallel(b *testing.B) {
	v := reload.New(reload.Options[*item]{})
	defer v.Close()
	_, _ = v.Swap(&item{n: 1}, reload.Info{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l, _ := v.Acquire()
			_ = l.Value()
			l.Release()
		}
	})
}
