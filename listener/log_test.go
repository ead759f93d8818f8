package listener_test

import (
	"context"
	"log"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/listener"
)

// record is what a logRecorder keeps of one slog record.
type record struct {
	level slog.Level
	msg   string
	keys  []string
	attrs map[string]slog.Value
}

// logRecorder is a slog.Handler that keeps every record, at every level.
type logRecorder struct {
	mu      sync.Mutex
	records []record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { panic("not used") }
func (h *logRecorder) WithGroup(string) slog.Handler            { panic("not used") }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := record{level: r.Level, msg: r.Message, attrs: map[string]slog.Value{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.keys = append(rec.keys, a.Key)
		rec.attrs[a.Key] = a.Value.Resolve()
		return true
	})
	h.mu.Lock()
	h.records = append(h.records, rec)
	h.mu.Unlock()
	return nil
}

// find returns the records with message msg.
func (h *logRecorder) find(msg string) []record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []record
	for _, r := range h.records {
		if r.msg == msg {
			out = append(out, r)
		}
	}
	return out
}

func (h *logRecorder) all() []record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.records)
}

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// TestRecords: every record says "listener: ...", its keys are snake_case
// and flat, durations are under duration and errors under error; the
// drain records carry the drain's figures.
func TestRecords(t *testing.T) {
	rec := &logRecorder{}
	l := wrap(t, listen(t), listener.Options{Logger: slog.New(rec)})
	l.Pause()
	l.Resume()

	// A drain cut off at its deadline, with one raw connection open.
	dial(t, l.Addr())
	_, err := l.Accept()
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s, drainErr := l.Drain(ctx)
	require.ErrorIs(t, drainErr, context.Canceled)
	require.Equal(t, 1, s.Forced)

	forced := rec.find("listener: drain deadline: connections force-closed")
	require.Len(t, forced, 1)
	f := forced[0]
	assert.Equal(t, slog.LevelWarn, f.level)
	assert.Equal(t, []string{"addr", "conns", "closed_idle", "closed_by_peer_or_server", "forced", "handed_over", "kept", "duration", "left", "error"}, f.keys)
	assert.Equal(t, int64(1), f.attrs["conns"].Int64())
	assert.Equal(t, int64(1), f.attrs["forced"].Int64())
	assert.Equal(t, int64(1), f.attrs["left"].Int64())
	assert.Equal(t, s.Duration, f.attrs["duration"].Duration())
	if assert.Equal(t, slog.KindAny, f.attrs["error"].Kind()) {
		err, _ := f.attrs["error"].Any().(error)
		assert.Equal(t, drainErr, err, "the record's error is the one Drain returned")
	}

	// Called off, then a complete drain of nothing.
	require.True(t, l.Undrain())
	off := rec.find("listener: drain called off")
	require.Len(t, off, 1)
	assert.Equal(t, []string{"addr", "conns", "closed_idle", "closed_by_peer_or_server", "forced", "handed_over", "kept", "duration", "drain_calls", "open"}, off[0].keys)
	_, err = l.Drain(context.Background())
	require.NoError(t, err)
	drained := rec.find("listener: drained")
	require.Len(t, drained, 1)
	assert.Equal(t, slog.LevelInfo, drained[0].level)
	assert.Equal(t, []string{"addr", "conns", "closed_idle", "closed_by_peer_or_server", "forced", "handed_over", "kept", "duration"}, drained[0].keys)

	assert.Len(t, rec.find("listener: paused"), 3, "Pause, and one per Drain")
	assert.Len(t, rec.find("listener: resumed"), 2, "Resume and Undrain")
	assert.Len(t, rec.find("listener: draining"), 2)
	for _, r := range rec.all() {
		assert.Regexp(t, `^listener: `, r.msg)
		for _, k := range r.keys {
			assert.Regexp(t, snakeCase, k, "key of %q", r.msg)
			assert.NotContains(t, []string{"err", "took", "stats"}, k, "key of %q", r.msg)
			if v := r.attrs[k]; v.Kind() == slog.KindDuration && k != "idle_grace" {
				assert.Equal(t, "duration", k, "a duration in %q", r.msg)
			}
		}
	}
}

// TestNilLoggerDiscards: a Listener without a Logger writes no record,
// not to slog.Default() either.
func TestNilLoggerDiscards(t *testing.T) {
	rec := &logRecorder{}
	// SetDefault also redirects package log; all three are put back.
	prev, prevOut, prevFlags := slog.Default(), log.Writer(), log.Flags()
	slog.SetDefault(slog.New(rec))
	t.Cleanup(func() {
		slog.SetDefault(prev)
		log.SetOutput(prevOut)
		log.SetFlags(prevFlags)
	})

	l := wrap(t, listen(t), listener.Options{})
	dial(t, l.Addr())
	_, err := l.Accept()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err = l.Drain(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	l.Undrain()
	assert.Empty(t, rec.all())
}
