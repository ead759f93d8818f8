package reload_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
			t.Errorf("item %d released twice", it.n)
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
	check.False(t, ok)
	check.Nil(t, l.Version())
	check.Equal(t, 0, l.Value())
	l.Release() // zero lease: no-op
	check.Nil(t, v.Current())
}

func TestLeaseKeepsReplacedVersion(t *testing.T) {
	v := newItemValue(t, reload.Options[*item]{})
	a, b := &item{n: 1}, &item{n: 2}
	ver1, err := v.Swap(a, reload.Info{ID: "a", Source: "test"})
	must.NoError(t, err)
	check.Equal(t, uint64(1), ver1.Seq)
	check.True(t, ver1.ReplacedAt().IsZero())

	l, ok := v.Acquire()
	must.True(t, ok)
	check.Same(t, a, l.Value())
	check.Same(t, ver1, l.Version())

	ver2, err := v.Swap(b, reload.Info{ID: "b"})
	must.NoError(t, err)
	check.Equal(t, uint64(2), ver2.Seq)
	check.Same(t, ver2, v.Current())
	check.False(t, ver1.ReplacedAt().IsZero())

	// The lease still sees version 1, which is not released yet.
	check.Same(t, a, l.Value())
	check.Zero(t, a.released.Load())
	check.False(t, ver1.Released())

	l2, ok := v.Acquire()
	must.True(t, ok)
	check.Same(t, b, l2.Value())
	l2.Release()

	l.Release()
	check.Equal(t, int32(1), a.released.Load())
	check.True(t, ver1.Released())
	check.Zero(t, b.released.Load())
}

func TestReplacedWithoutLeasesReleasedAtOnce(t *testing.T) {
	v := newItemValue(t, reload.Options[*item]{})
	a := &item{n: 1}
	_, err := v.Swap(a, reload.Info{})
	must.NoError(t, err)
	_, err = v.Swap(&item{n: 2}, reload.Info{})
	must.NoError(t, err)
	check.Equal(t, int32(1), a.released.Load())
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
	must.NoError(t, err)
	_, err = v.Swap(-1, reload.Info{ID: "minus", Source: "cfg.json"})
	must.ErrorIs(t, err, bad)
	check.Contains(t, err.Error(), "cfg.json")

	l, ok := v.Acquire()
	must.True(t, ok)
	check.Equal(t, 1, l.Value())
	l.Release()
	must.Len(t, events, 2)
	check.Equal(t, reload.EventSwap, events[0].Kind)
	check.Equal(t, reload.EventFailure, events[1].Kind)
	check.Equal(t, uint64(1), events[1].Previous)
	check.ErrorIs(t, events[1].Err, bad)
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
	must.NoError(t, err)
	check.Equal(t, uint64(1), ver.Seq)

	// Same ID: unchanged, the loaded value is handed to Release.
	ver, err = v.Load(ctx, load(10, "h1", nil))
	must.NoError(t, err)
	check.Equal(t, uint64(1), ver.Seq)
	check.Equal(t, []int{10}, released)

	// Failing loader: error names the source, current kept.
	_, err = v.Load(ctx, load(0, "", errors.New("disk on fire")))
	must.ErrorContains(t, err, "src")
	must.ErrorContains(t, err, "disk on fire")
	check.Equal(t, uint64(1), v.Current().Seq)

	// Failing validation: value released, current kept.
	_, err = v.Load(ctx, load(-5, "h2", nil))
	must.ErrorContains(t, err, "negative")
	check.Equal(t, []int{10, -5}, released)
	check.Equal(t, uint64(1), v.Current().Seq)

	ver, err = v.Load(ctx, load(2, "h3", nil))
	must.NoError(t, err)
	check.Equal(t, uint64(2), ver.Seq)
	check.Equal(t, []int{10, -5, 1}, released)
}

func TestCloseReleasesAfterLastLease(t *testing.T) {
	v := newItemValue(t, reload.Options[*item]{})
	a := &item{n: 1}
	_, err := v.Swap(a, reload.Info{})
	must.NoError(t, err)
	l, ok := v.Acquire()
	must.True(t, ok)

	v.Close()
	v.Close() // idempotent
	_, ok = v.Acquire()
	check.False(t, ok)
	_, err = v.Swap(&item{}, reload.Info{})
	check.ErrorIs(t, err, reload.ErrClosed)
	_, err = v.Load(context.Background(), func(context.Context) (*item, reload.Info, error) { return nil, reload.Info{}, nil })
	check.ErrorIs(t, err, reload.ErrClosed)
	select {
	case <-v.Done():
		t.Fatal("Done before the last lease ended")
	default:
	}
	check.Zero(t, a.released.Load())
	l.Release()
	check.Equal(t, int32(1), a.released.Load())
	select {
	case <-v.Done():
	default:
		t.Fatal("Done not closed after the last release")
	}
}

func TestRollback(t *testing.T) {
	var events []reload.Event
	v := newItemValue(t, reload.Options[*item]{
		Retain:  2,
		OnEvent: func(e reload.Event) { events = append(events, e) },
	})
	_, err := v.Rollback()
	must.ErrorIs(t, err, reload.ErrNotRetained)

	items := []*item{{n: 1}, {n: 2}, {n: 3}, {n: 4}}
	for i, it := range items {
		_, err := v.Swap(it, reload.Info{ID: fmt.Sprint("id", i+1)})
		must.NoError(t, err)
	}
	// Retain 2: version 1 released, 2 and 3 kept.
	check.Equal(t, int32(1), items[0].released.Load())
	check.Zero(t, items[1].released.Load())
	check.Zero(t, items[2].released.Load())

	prev, ok := v.AcquirePrevious(0)
	must.True(t, ok)
	check.Same(t, items[2], prev.Value())
	prev.Release()
	_, ok = v.AcquirePrevious(2)
	check.False(t, ok)

	ver, err := v.Rollback()
	must.NoError(t, err)
	check.Equal(t, uint64(3), ver.Seq)
	check.Equal(t, "id3", ver.ID)
	l, ok := v.Acquire()
	must.True(t, ok)
	check.Same(t, items[2], l.Value())
	l.Release()
	check.Equal(t, reload.EventRollback, events[len(events)-1].Kind)
	check.Equal(t, uint64(4), events[len(events)-1].Previous)

	// Rolling back again rolls forward to 4.
	ver, err = v.Rollback()
	must.NoError(t, err)
	check.Equal(t, uint64(4), ver.Seq)

	ver, err = v.RollbackTo(2)
	must.NoError(t, err)
	check.Equal(t, uint64(2), ver.Seq)
	_, err = v.RollbackTo(1)
	must.ErrorIs(t, err, reload.ErrNotRetained)
	check.Contains(t, err.Error(), "version 1")

	h := v.History()
	must.Len(t, h, 4)
	check.Equal(t, uint64(4), h[0].Seq)
	check.Equal(t, uint64(1), h[3].Seq)
	check.True(t, h[3].Released)
	check.True(t, h[2].Current) // seq 2
	check.True(t, h[0].Retained)
	check.False(t, h[2].LoadedAt.IsZero())
	for _, it := range items[1:] {
		check.Zero(t, it.released.Load(), "item %d", it.n)
	}
}

func TestHistoryBounded(t *testing.T) {
	v := reload.New(reload.Options[int]{History: 3})
	defer v.Close()
	for i := range 10 {
		_, err := v.Swap(i, reload.Info{ID: fmt.Sprint(i), Source: "s"})
		must.NoError(t, err)
	}
	h := v.History()
	must.Len(t, h, 3)
	check.Equal(t, []uint64{10, 9, 8}, []uint64{h[0].Seq, h[1].Seq, h[2].Seq})
	check.Equal(t, "9", h[0].ID)
	check.True(t, h[0].Current)
	check.True(t, h[1].Released)
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
				t.Errorf("item %d released twice", it.n)
			}
			releases.Add(1)
		},
	})
	_, err := v.Swap(&item{n: 0}, reload.Info{})
	must.NoError(t, err)

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
					t.Error("Acquire failed while open")
					return
				}
				if l.Value().released.Load() != 0 {
					t.Errorf("lease on released item %d", l.Value().n)
				}
				if p, ok := v.AcquirePrevious(0); ok {
					if p.Value().released.Load() != 0 {
						t.Errorf("lease on released previous item %d", p.Value().n)
					}
					p.Release()
				}
				l.Release()
			}
		}()
	}
	for i := 1; i <= swaps; i++ {
		_, err := v.Swap(&item{n: i}, reload.Info{})
		must.NoError(t, err)
		if i%50 == 0 {
			_, err := v.Rollback()
			must.NoError(t, err)
		}
	}
	close(stop)
	wg.Wait()
	v.Close()
	select {
	case <-v.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("versions not all released after Close")
	}
	check.Equal(t, int64(swaps+1), releases.Load())
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
	check.Zero(t, allocs)
}

func TestDoubleReleasePanics(t *testing.T) {
	v := reload.New(reload.Options[int]{})
	_, _ = v.Swap(1, reload.Info{})
	l, _ := v.Acquire()
	l.Release()
	v.Close() // count now 0: version released
	check.Panics(t, l.Release)
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
