package plugin

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoff-go/handoff/plugin/internal/testplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Watch swaps in a binary written to the watched path, goes on after a
// refused one, returns nil when its context ends and ErrClosed once the
// Manager is closed.
func TestWatch(t *testing.T) {
	ev := newEvents()
	path := filepath.Join(t.TempDir(), "greeter")
	copyFile(t, bins["v1"], path)
	opts := baseOptions(t, path)
	opts.OnEvent = ev.on
	m := newManager(t, opts)
	ev.wait(t, EventSwapped)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Watch(ctx) }()
	ev.wait(t, EventUnchanged) // the load Watch makes when it starts
	start := time.Now()
	copyFile(t, bins["v2"], path)
	e := ev.wait(t, EventSwapped)
	t.Logf("new binary to serving: %v (%s)", time.Since(start), e.Version)
	require.Equal(t, "v2", versionFor(t, m, "k"), "after the watcher's swap")

	// A bad binary at the path is refused; v2 keeps answering.
	copyFile(t, bins["unhealthy"], path)
	ev.wait(t, EventRefused)
	require.Equal(t, "v2", versionFor(t, m, "k"), "after a refused binary")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "Watch once its context ended")
	case <-time.After(30 * time.Second):
		require.FailNow(t, "Watch still running 30s after its context ended")
	}

	// Close ends a running Watch, and a Watch after Close returns at once.
	go func() { done <- m.Watch(context.Background()) }()
	ev.wait(t, EventRefused) // its first load: the unhealthy binary again
	require.NoError(t, m.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrClosed)
	default:
		require.FailNow(t, "Close returned before the Watch it ended")
	}
	require.ErrorIs(t, m.Watch(context.Background()), ErrClosed)
}

// Reload loads Options.Path again: the func a program passes to
// handoff.Options.Reload for SIGUSR2. While another operation runs it is
// refused with ErrBusy.
func TestReload(t *testing.T) {
	ev := newEvents()
	path := filepath.Join(t.TempDir(), "greeter")
	copyFile(t, bins["v1"], path)
	opts := baseOptions(t, path)
	opts.OnEvent = ev.on
	m := newManager(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	require.NoError(t, m.Reload(ctx), "the same binary")
	assert.Equal(t, 1, ev.count(EventUnchanged))
	copyFile(t, bins["v2"], path)
	require.NoError(t, m.Reload(ctx))
	require.Equal(t, "v2", versionFor(t, m, "k"))

	// A swap hangs in the handshake of the "hang" variant while Reload
	// is called.
	swapCtx, swapCancel := context.WithCancel(ctx)
	swapped := make(chan error, 1)
	go func() { _, err := m.Swap(swapCtx, bins["hang"]); swapped <- err }()
	ev.waitFor(t, EventStaged, func(e Event) bool { return e.Path == bins["hang"] })
	assert.ErrorIs(t, m.Reload(ctx), ErrBusy)
	swapCancel()
	var le *LoadError
	require.ErrorAs(t, <-swapped, &le)
	assert.Equal(t, PhaseStart, le.Phase)
	assert.ErrorIs(t, le, context.Canceled)
	require.NoError(t, m.Reload(ctx), "once the swap is over")
}

// The plugin's stderr reaches the host's slog, marked as such.
func TestPluginStderrInSlog(t *testing.T) {
	h := newRecorder()
	opts := baseOptions(t, bins["v1"])
	opts.Logger = slog.New(h)
	newManager(t, opts)
	var line record
	require.Eventually(t, func() bool {
		for _, r := range h.all() {
			if strings.HasPrefix(r.msg, "plugin: testplugin v1 starting") {
				line = r
				return true
			}
		}
		return false
	}, 30*time.Second, 10*time.Millisecond, "the plugin's stderr line did not reach the logger")
	assert.Equal(t, "stderr", line.attr("output"))
	assert.Equal(t, testplugin.Name, line.attr("plugin"))
}

// A nil Options.Logger discards: nothing goes to slog.Default.
func TestNilLoggerDiscards(t *testing.T) {
	h := newRecorder()
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(h))
	opts := baseOptions(t, bins["v1"])
	opts.Logger = nil
	m := newManager(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := m.Swap(ctx, bins["v2"])
	require.NoError(t, err)
	require.NoError(t, m.Close())
	assert.Empty(t, h.all())
}

// record is a slog record as a recorder keeps it: the message, the level and
// every attribute, those of Logger.With first.
type record struct {
	msg   string
	level slog.Level
	attrs []slog.Attr
}

func (r record) attr(key string) any {
	for _, a := range r.attrs {
		if a.Key == key {
			return a.Value.Resolve().Any()
		}
	}
	return nil
}

// recorder is a slog.Handler that keeps every record, at every level.
type recorder struct {
	s    *recordStore
	with []slog.Attr
}

type recordStore struct {
	mu      sync.Mutex
	records []record
}

func newRecorder() *recorder { return &recorder{s: &recordStore{}} }

func (h *recorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *recorder) Handle(_ context.Context, r slog.Record) error {
	rec := record{msg: r.Message, level: r.Level, attrs: append([]slog.Attr(nil), h.with...)}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs = append(rec.attrs, a)
		return true
	})
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	h.s.records = append(h.s.records, rec)
	return nil
}

func (h *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorder{s: h.s, with: append(append([]slog.Attr(nil), h.with...), as...)}
}

func (h *recorder) WithGroup(string) slog.Handler { return h }

func (h *recorder) all() []record {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return append([]record(nil), h.s.records...)
}
