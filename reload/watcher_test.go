package reload_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/reload"
)

const waitLimit = 20 * time.Second

// testDebounce is longer than the default so that a test writer descheduled
// on a busy machine rarely looks "done"; correctness never depends on it
// (the loader refuses incomplete content).
const testDebounce = 300 * time.Millisecond

// loadDoc reads a document that must end with "END\n": the loader's full
// parse, which refuses a file still being written.
func loadDoc(path string, loads *atomic.Int64) reload.Loader[string] {
	return func(context.Context) (string, reload.Info, error) {
		loads.Add(1)
		b, err := os.ReadFile(path)
		if err != nil {
			return "", reload.Info{}, err
		}
		if !bytes.HasSuffix(b, []byte("END\n")) {
			return "", reload.Info{}, errors.New("incomplete document: no END line")
		}
		sum := sha256.Sum256(b)
		return string(b), reload.Info{ID: hex.EncodeToString(sum[:8])}, nil
	}
}

type watched struct {
	v      *reload.Value[string]
	w      *reload.Watcher[string]
	events chan reload.Event
	loads  atomic.Int64
}

// startWatch creates a Value and a Watcher on path, loads the first version
// and runs the watcher until the test ends.
func startWatch(t *testing.T, path string) *watched {
	t.Helper()
	tw := &watched{events: make(chan reload.Event, 1024)}
	tw.v = reload.New(reload.Options[string]{
		OnEvent: func(e reload.Event) {
			select {
			case tw.events <- e:
			default:
				assert.Fail(t, "event channel full", "dropped %v", e.Kind)
			}
		},
	})
	w, err := reload.NewWatcher(tw.v, path, loadDoc(path, &tw.loads), reload.WatcherOptions{Debounce: testDebounce})
	require.NoError(t, err)
	tw.w = w
	_, err = w.Reload(context.Background())
	require.NoError(t, err, "first load")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled, "Run")
		assert.NoError(t, w.Close())
		tw.v.Close()
	})
	tw.nextSwap(t) // the first load
	return tw
}

// nextSwap waits for the next swap and returns its content, recording the
// failures seen on the way.
func (tw *watched) nextSwap(t *testing.T) string {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case e := <-tw.events:
			switch e.Kind {
			case reload.EventSwap:
				l, ok := tw.v.Acquire()
				require.True(t, ok)
				defer l.Release()
				require.Equal(t, e.Seq, l.Version().Seq, "the swap event's version is current")
				return l.Value()
			case reload.EventFailure:
				t.Logf("load refused (expected only when a writer was slower than the debounce): %v", e.Err)
			}
		case <-deadline:
			require.FailNow(t, "no swap", "within %v", waitLimit)
			return ""
		}
	}
}

// expectOneReload waits for the reload caused by a change and then proves
// it was the only one: a sentinel content written atomically afterwards
// must be the very next swap.
func (tw *watched) expectOneReload(t *testing.T, path, want string) {
	t.Helper()
	got := tw.nextSwap(t)
	require.Equal(t, want, got, "first reload after the change")
	sentinel := "sentinel " + t.Name() + "\nEND\n"
	renameInto(t, path, sentinel)
	got = tw.nextSwap(t)
	assert.Equal(t, sentinel, got, "the change gave more than one reload")
	t.Logf("loads: %d (including first load and sentinel)", tw.loads.Load())
}

func renameInto(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

func doc(version string, lines int) string {
	var b strings.Builder
	for i := range lines {
		b.WriteString(version)
		b.WriteString(" line ")
		b.WriteString(strings.Repeat("x", i%40))
		b.WriteString("\n")
	}
	b.WriteString("END\n")
	return b.String()
}

func TestWatchEditorRenameSave(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.txt")
	require.NoError(t, os.WriteFile(path, []byte(doc("v1", 3)), 0o644))
	tw := startWatch(t, path)

	// What vim (backupcopy=no) and many editors do: move the original to a
	// backup, write the new file under the real name, copy the mode, delete
	// the backup, plus a swap file nearby.
	v2 := doc("v2", 50)
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".config.txt.swp"), []byte("swap"), 0o600))
	require.NoError(t, os.Rename(path, path+"~"))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	require.NoError(t, err)
	_, err = f.WriteString(v2)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
	require.NoError(t, os.Chmod(path, 0o644))
	require.NoError(t, os.Remove(path+"~"))
	require.NoError(t, os.Remove(filepath.Join(dir, ".config.txt.swp")))

	tw.expectOneReload(t, path, v2)
}

func TestWatchBurstOfWrites(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flags.txt")
	require.NoError(t, os.WriteFile(path, []byte(doc("v1", 3)), 0o644))
	tw := startWatch(t, path)

	// Rewrite the file in place 20 times in a row, each time in many small
	// writes: dozens of Write events, one reload of the last content.
	var last string
	for i := range 20 {
		last = doc("burst"+string(rune('a'+i)), 30)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		require.NoError(t, err)
		for _, line := range strings.SplitAfter(last, "\n") {
			_, err := f.WriteString(line)
			require.NoError(t, err)
		}
		require.NoError(t, f.Close())
	}
	tw.expectOneReload(t, path, last)
}

func TestWatchSlowChunkedWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "big.txt")
	require.NoError(t, os.WriteFile(path, []byte(doc("v1", 3)), 0o644))
	tw := startWatch(t, path)

	// A writer that dribbles the file out in 10 chunks 30ms apart (well
	// within the debounce period): one reload, of the whole file.
	content := doc("slow", 2000)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	require.NoError(t, err)
	chunk := len(content)/10 + 1
	for off := 0; off < len(content); off += chunk {
		end := min(off+chunk, len(content))
		_, err := f.WriteString(content[off:end])
		require.NoError(t, err)
		time.Sleep(30 * time.Millisecond) // the slow writer being simulated, not synchronisation
	}
	require.NoError(t, f.Close())
	tw.expectOneReload(t, path, content)
}

func TestWatchSlowerThanDebounceNeverLoadsHalf(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "slow.txt")
	require.NoError(t, os.WriteFile(path, []byte(doc("v1", 3)), 0o644))
	tw := startWatch(t, path)

	// Pauses longer than the debounce: the watcher loads the partial file,
	// the loader refuses it, the current version keeps serving, and the
	// completed file is the one reload.
	content := doc("slower", 200)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	require.NoError(t, err)
	half := len(content) / 2
	_, err = f.WriteString(content[:half])
	require.NoError(t, err)
	// Wait until the watcher has tried and refused the half file.
	deadline := time.After(waitLimit)
	for refused := false; !refused; {
		select {
		case e := <-tw.events:
			assert.False(t, e.Kind == reload.EventSwap, "half a file swapped in")
			refused = e.Kind == reload.EventFailure
		case <-deadline:
			require.FailNow(t, "partial file not attempted")
		}
	}
	l, ok := tw.v.Acquire()
	require.True(t, ok)
	assert.Equal(t, doc("v1", 3), l.Value(), "current version kept")
	l.Release()
	_, err = f.WriteString(content[half:])
	require.NoError(t, err)
	require.NoError(t, f.Close())
	tw.expectOneReload(t, path, content)
}

// TestWatchKubernetesSymlinkSwap reproduces what the kubelet's AtomicWriter
// does to a ConfigMap volume: the visible file is a symlink through the
// ..data symlink to a timestamped directory; an update writes a new
// timestamped directory, points ..data_tmp at it, renames ..data_tmp over
// ..data (atomic) and removes the old directory.
func TestWatchKubernetesSymlinkSwap(t *testing.T) {
	vol := t.TempDir()
	ts1 := "..2026_11_24_10_00_00.000000001"
	require.NoError(t, os.Mkdir(filepath.Join(vol, ts1), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(vol, ts1, "app.conf"), []byte(doc("k1", 5)), 0o644))
	require.NoError(t, os.Symlink(ts1, filepath.Join(vol, "..data")))
	require.NoError(t, os.Symlink(filepath.Join("..data", "app.conf"), filepath.Join(vol, "app.conf")))
	path := filepath.Join(vol, "app.conf")
	tw := startWatch(t, path)
	assert.Equal(t, 1, int(tw.v.Current().Seq))

	kubeletUpdate := func(ts, content string) {
		require.NoError(t, os.Mkdir(filepath.Join(vol, ts), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(vol, ts, "app.conf"), []byte(content), 0o644))
		require.NoError(t, os.Symlink(ts, filepath.Join(vol, "..data_tmp")))
		old, err := os.Readlink(filepath.Join(vol, "..data"))
		require.NoError(t, err)
		require.NoError(t, os.Rename(filepath.Join(vol, "..data_tmp"), filepath.Join(vol, "..data")))
		require.NoError(t, os.RemoveAll(filepath.Join(vol, old)))
	}
	k2 := doc("k2", 40)
	kubeletUpdate("..2026_11_24_10_05_00.000000002", k2)
	got := tw.nextSwap(t)
	require.Equal(t, k2, got)

	// The watcher now follows the new directory: a second update is seen
	// too, and is the very next reload (no reload between).
	k3 := doc("k3", 10)
	kubeletUpdate("..2026_11_24_10_10_00.000000003", k3)
	got = tw.nextSwap(t)
	assert.Equal(t, k3, got, "second update")
}

func TestWatchDirectoryTree(t *testing.T) {
	root := filepath.Join(t.TempDir(), "site")
	require.NoError(t, os.MkdirAll(filepath.Join(root, "a"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "a", "x"), []byte("x1"), 0o644))
	var loads atomic.Int64
	events := make(chan reload.Event, 100)
	v := reload.New(reload.Options[string]{OnEvent: func(e reload.Event) { events <- e }})
	defer v.Close()
	load := func(context.Context) (string, reload.Info, error) {
		loads.Add(1)
		var b strings.Builder
		err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(p)
			b.WriteString(strings.TrimPrefix(p, root) + "=" + string(data) + ";")
			return err
		})
		return b.String(), reload.Info{ID: b.String()}, err
	}
	w, err := reload.NewWatcher(v, root, load, reload.WatcherOptions{Debounce: testDebounce})
	require.NoError(t, err)
	defer w.Close()
	_, err = w.Reload(context.Background())
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(ctx) })
	defer wg.Wait()
	defer cancel()

	wait := func(want string) {
		t.Helper()
		deadline := time.After(waitLimit)
		for {
			select {
			case e := <-events:
				if e.Kind == reload.EventSwap && e.ID == want {
					return
				}
			case <-deadline:
				require.FailNow(t, "no swap", "to %q; current %q", want, v.Current().ID)
			}
		}
	}
	wait("/a/x=x1;")
	// A file in a new subdirectory, then a change deep in it.
	require.NoError(t, os.MkdirAll(filepath.Join(root, "b", "c"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "b", "c", "y"), []byte("y1"), 0o644))
	wait("/a/x=x1;/b/c/y=y1;")
	require.NoError(t, os.WriteFile(filepath.Join(root, "b", "c", "y"), []byte("y2"), 0o644))
	wait("/a/x=x1;/b/c/y=y2;")
}

func TestReloadOnDemandCoalesces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.txt")
	require.NoError(t, os.WriteFile(path, []byte(doc("v1", 1)), 0o644))
	v := reload.New(reload.Options[string]{})
	defer v.Close()

	var running, maxRunning, loads atomic.Int64
	gate, started := make(chan struct{}), make(chan struct{})
	load := func(ctx context.Context) (string, reload.Info, error) {
		if n := running.Add(1); n > maxRunning.Load() {
			maxRunning.Store(n)
		}
		defer running.Add(-1)
		if loads.Add(1) == 1 {
			close(started)
			select {
			case <-gate:
			case <-ctx.Done():
				return "", reload.Info{}, ctx.Err()
			}
		}
		b, err := os.ReadFile(path)
		return string(b), reload.Info{ID: string(b)}, err
	}
	w, err := reload.NewWatcher(v, path, load, reload.WatcherOptions{})
	require.NoError(t, err)
	defer w.Close()

	ctx := context.Background()
	first := make(chan error, 1)
	go func() { _, err := w.Reload(ctx); first <- err }()
	select { // the first load is running
	case <-started:
	case <-time.After(waitLimit):
		require.FailNow(t, "first load did not start")
	}
	// Change the file, then ask 10 times while the first load is blocked.
	require.NoError(t, os.WriteFile(path, []byte(doc("v2", 1)), 0o644))
	var wg sync.WaitGroup
	results := make(chan *reload.Version[string], 10)
	for range 10 {
		wg.Go(func() {
			ver, err := w.Reload(ctx)
			assert.NoError(t, err)
			results <- ver
		})
	}
	// Whether the callers queued behind the blocked load or not, each asked
	// after the change, so each must be answered by a load that saw it.
	close(gate)
	require.NoError(t, <-first)
	wg.Wait()
	close(results)
	for ver := range results {
		assert.Equal(t, doc("v2", 1), ver.ID, "a Reload called after the change saw it")
	}
	assert.Equal(t, int64(1), maxRunning.Load(), "loads overlapped")
	assert.True(t, loads.Load() <= 11)
	t.Logf("11 Reload calls, %d loads", loads.Load())
}

func TestWatcherCloseIdempotentAndRunAfterClose(t *testing.T) {
	dir := t.TempDir()
	v := reload.New(reload.Options[string]{})
	defer v.Close()
	var loads atomic.Int64
	w, err := reload.NewWatcher(v, filepath.Join(dir, "missing.txt"), loadDoc(filepath.Join(dir, "missing.txt"), &loads), reload.WatcherOptions{})
	require.NoError(t, err)
	_, err = w.Reload(context.Background())
	assert.ErrorContains(t, err, "missing.txt")
	require.NoError(t, w.Close())
	require.NoError(t, w.Close())
	assert.ErrorIs(t, w.Run(context.Background()), reload.ErrWatcherClosed)
	_, err = w.Reload(context.Background())
	assert.ErrorContains(t, err, "missing.txt", "Reload works without Run, after Close too")

	_, err = reload.NewWatcher(v, filepath.Join(dir, "no", "such", "dir", "f"), loadDoc("", &loads), reload.WatcherOptions{})
	assert.Error(t, err)
}

// TestWatcherRunOneAtATime: a second Run while one runs is refused with
// ErrBusy; once the first has returned, Run can run again and still sees
// the changes made in between.
func TestWatcherRunOneAtATime(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.txt")
	require.NoError(t, os.WriteFile(path, []byte(doc("v1", 1)), 0o644))
	events := make(chan reload.Event, 64)
	v := reload.New(reload.Options[string]{OnEvent: func(e reload.Event) { events <- e }})
	defer v.Close()
	w, err := reload.NewWatcher(v, path, loadDoc(path, new(atomic.Int64)), reload.WatcherOptions{Debounce: -1})
	require.NoError(t, err)
	defer func() { assert.NoError(t, w.Close()) }()
	_, err = w.Reload(context.Background())
	require.NoError(t, err)
	waitEvent(t, events, reload.EventSwap)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	renameInto(t, path, doc("v2", 1)) // seen by the first Run
	waitEvent(t, events, reload.EventSwap)
	assert.ErrorIs(t, w.Run(context.Background()), reload.ErrBusy)
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)

	renameInto(t, path, doc("v3", 1)) // while no Run runs
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- w.Run(ctx) }()
	e := waitEvent(t, events, reload.EventSwap)
	assert.Equal(t, uint64(3), e.Seq)
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
}

// TestWatcherRunLoadsWhatTheLastRunSaw: a change the previous Run saw, but
// had not loaded when it ended, is loaded by the next Run.
func TestWatcherRunLoadsWhatTheLastRunSaw(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.txt")
	require.NoError(t, os.WriteFile(path, []byte(doc("v1", 1)), 0o644))
	events := make(chan reload.Event, 64)
	v := reload.New(reload.Options[string]{OnEvent: func(e reload.Event) { events <- e }})
	defer v.Close()
	w, err := reload.NewWatcher(v, path, loadDoc(path, new(atomic.Int64)), reload.WatcherOptions{Debounce: time.Hour})
	require.NoError(t, err)
	defer func() { assert.NoError(t, w.Close()) }()
	_, err = w.Reload(context.Background())
	require.NoError(t, err)
	waitEvent(t, events, reload.EventSwap)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	renameInto(t, path, doc("v2", 1))
	// Not synchronisation: time for the first Run to take the change in, so
	// that the test fails if a Run forgets what it saw. Either way the
	// second Run must load v2.
	time.Sleep(200 * time.Millisecond)
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	reload.SetDebounce(w, 10*time.Millisecond)
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- w.Run(ctx) }()
	e := waitEvent(t, events, reload.EventSwap)
	assert.Equal(t, uint64(2), e.Seq)
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)
}

func TestWatchFileAppearsLater(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "later.txt")
	events := make(chan reload.Event, 100)
	v := reload.New(reload.Options[string]{OnEvent: func(e reload.Event) { events <- e }})
	defer v.Close()
	var loads atomic.Int64
	w, err := reload.NewWatcher(v, path, loadDoc(path, &loads), reload.WatcherOptions{Debounce: testDebounce})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(ctx) })
	defer func() { cancel(); wg.Wait(); require.NoError(t, w.Close()) }()

	renameInto(t, path, doc("late", 2))
	deadline := time.After(waitLimit)
	for {
		select {
		case e := <-events:
			if e.Kind == reload.EventSwap {
				assert.Equal(t, uint64(1), e.Seq)
				return
			}
		case <-deadline:
			require.FailNow(t, "file created later never loaded")
		}
	}
}
