package reload_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/reload"
)

// records is a slog.Handler that keeps every record, with its attributes
// flattened into a map.
type records struct {
	mu   sync.Mutex
	list []record
}

type record struct {
	level slog.Level
	msg   string
	attrs map[string]any
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	m := map[string]any{}
	rec.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Any()
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, record{level: rec.Level, msg: rec.Message, attrs: m})
	return nil
}

func (r *records) all() []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]record(nil), r.list...)
}

// TestEventsAndRecordsShareOneShape drives every kind of event a Value
// reports and checks each against its log record: message "reload:
// <kind>", the kind under "event", "duration" and "error" when set, and
// the event's own fields in snake_case.
func TestEventsAndRecordsShareOneShape(t *testing.T) {
	recs := &records{}
	var events []reload.Event
	v := reload.New(reload.Options[int]{
		Retain:  1,
		Logger:  slog.New(recs),
		OnEvent: func(e reload.Event) { events = append(events, e) },
	})
	ctx := context.Background()
	load := func(n int, id string, err error) reload.Loader[int] {
		return func(context.Context) (int, reload.Info, error) {
			time.Sleep(time.Millisecond) // a Duration that is never zero
			return n, reload.Info{ID: id, Source: "mem"}, err
		}
	}
	_, err := v.Load(ctx, load(1, "a", nil))
	require.NoError(t, err)
	_, err = v.Load(ctx, load(1, "a", nil)) // unchanged
	require.NoError(t, err)
	boom := errors.New("boom")
	_, err = v.Load(ctx, load(0, "", boom))
	require.ErrorIs(t, err, boom)
	_, err = v.Load(ctx, load(2, "b", nil))
	require.NoError(t, err)
	_, err = v.Rollback()
	require.NoError(t, err)
	v.Close() // releases both versions

	kinds := []reload.EventKind{
		reload.EventSwap, reload.EventUnchanged, reload.EventFailure, reload.EventSwap,
		reload.EventRollback, reload.EventClose, reload.EventRelease, reload.EventRelease,
	}
	got := make([]reload.EventKind, len(events))
	for i, e := range events {
		got[i] = e.Kind
	}
	require.Equal(t, kinds, got)
	rs := recs.all()
	require.Len(t, rs, len(events), "one record per event")
	for i, e := range events {
		r := rs[i]
		assert.Equal(t, "reload: "+e.Kind.String(), r.msg)
		assert.Equal(t, e.Kind.String(), r.attrs["event"])
		assert.False(t, e.Time.IsZero(), "%v has a Time", e.Kind)
		if e.Duration != 0 {
			assert.Equal(t, e.Duration, r.attrs["duration"])
		} else {
			assert.NotContains(t, r.attrs, "duration")
		}
		if e.Err != nil {
			assert.Equal(t, e.Err, r.attrs["error"])
			assert.GreaterOrEqual(t, r.level, slog.LevelWarn)
		} else {
			assert.NotContains(t, r.attrs, "error")
		}
		for k := range r.attrs {
			assert.Contains(t, []string{"event", "duration", "error", "seq", "id", "source", "previous"}, k)
		}
		if e.Seq != 0 {
			assert.Equal(t, e.Seq, r.attrs["seq"])
		}
	}
	swap, failure := events[0], events[2]
	assert.Positive(t, swap.Duration, "time spent in the Loader")
	assert.Equal(t, "mem", rs[0].attrs["source"])
	assert.Positive(t, failure.Duration)
	assert.Equal(t, uint64(1), failure.Previous)
	assert.Equal(t, "reload: load mem: boom", failure.Err.Error())
}

// TestWatcherEvents: a watcher reports the change it loads for, and its
// watch errors, as events of the Value, and logs nothing else.
func TestWatcherEvents(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.txt")
	require.NoError(t, os.WriteFile(path, []byte(doc("v1", 1)), 0o644))
	recs := &records{}
	events := make(chan reload.Event, 64)
	v := reload.New(reload.Options[string]{OnEvent: func(e reload.Event) { events <- e }})
	defer v.Close()
	w, err := reload.NewWatcher(v, path, loadDoc(path, new(atomic.Int64)), reload.WatcherOptions{
		Debounce: -1, // none: the change is loaded at once
		Logger:   slog.New(recs),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { assert.ErrorIs(t, w.Run(ctx), context.Canceled) })
	defer func() {
		cancel()
		wg.Wait()
		assert.NoError(t, w.Close())
	}()

	renameInto(t, path, doc("v2", 1))
	change := waitEvent(t, events, reload.EventChange)
	assert.Equal(t, path, change.Source)
	waitEvent(t, events, reload.EventSwap)
	for _, r := range recs.all() {
		assert.Equal(t, "reload: change", r.msg, "the watcher's Logger has its own events only")
		assert.Equal(t, "change", r.attrs["event"])
		assert.Equal(t, path, r.attrs["source"])
	}
}

func waitEvent(t *testing.T, events <-chan reload.Event, kind reload.EventKind) reload.Event {
	t.Helper()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for {
		select {
		case e := <-events:
			if e.Kind == kind {
				return e
			}
		case <-timer.C:
			require.FailNow(t, "no event", "no %v event within %v", kind, waitLimit)
		}
	}
}
