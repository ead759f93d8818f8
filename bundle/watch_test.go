package bundle_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/bundle"
	"github.com/handoff-go/handoff/reload"
)

type watchedBundle struct {
	h      *bundle.Handler
	events chan reload.Event
}

// watchBundle serves the bundle at path with Watch running (which loads
// it first) until the test ends.
func watchBundle(t *testing.T, path string) *watchedBundle {
	t.Helper()
	wb := &watchedBundle{events: make(chan reload.Event, 256)}
	wb.h = bundle.New(path, bundle.Options{
		Debounce: 300 * time.Millisecond,
		OnEvent: func(e reload.Event) {
			select {
			case wb.events <- e:
			default:
				assert.Fail(t, "event dropped", "%v", e.Kind)
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { assert.ErrorIs(t, wb.h.Watch(ctx), context.Canceled) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		assert.NoError(t, wb.h.Close())
	})
	wb.next(t, reload.EventSwap)
	return wb
}

// next waits for the next event of kind, failing on a swap it did not ask for.
func (wb *watchedBundle) next(t *testing.T, kind reload.EventKind) reload.Event {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-wb.events:
			if e.Kind == kind {
				return e
			}
			require.NotEqual(t, reload.EventSwap, e.Kind, "unexpected swap to %d while waiting for %v", e.Seq, kind)
		case <-deadline:
			require.FailNow(t, "no event", "no %v event within 20s", kind)
		}
	}
}

func (wb *watchedBundle) index(t *testing.T) string {
	t.Helper()
	return get(t, wb.h, "/").Body.String()
}

func TestWatchArchiveRenamedIntoPlace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "site.zip")
	writeAtomic(t, path, zipBytes(t, sortedEntries(frontEnd(1))))
	wb := watchBundle(t, path)

	writeAtomic(t, path, zipBytes(t, sortedEntries(frontEnd(2))))
	wb.next(t, reload.EventSwap)
	assert.Equal(t, frontEnd(2)["index.html"], wb.index(t))

	// A bad bundle renamed into place: refused, version 2 keeps serving.
	writeAtomic(t, path, zipBytes(t, append(sortedEntries(frontEnd(3)), entry{name: "../evil", data: "x"})))
	e := wb.next(t, reload.EventFailure)
	assert.ErrorIs(t, e.Err, bundle.ErrUnsafePath)
	assert.Equal(t, frontEnd(2)["index.html"], wb.index(t))

	// Then a good one: exactly the next swap.
	writeAtomic(t, path, zipBytes(t, sortedEntries(frontEnd(4))))
	wb.next(t, reload.EventSwap)
	assert.Equal(t, frontEnd(4)["index.html"], wb.index(t))
}

// TestWatchArchiveCopiedSlowly writes a tar.gz in place, in chunks, with a
// pause longer than the debounce period in the middle: the half archive
// does not parse and is refused, the complete one is the one swap.
func TestWatchArchiveCopiedSlowly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "site.tar.gz")
	writeAtomic(t, path, tarGzBytes(t, sortedEntries(frontEnd(1))))
	wb := watchBundle(t, path)

	data := tarGzBytes(t, sortedEntries(frontEnd(2)))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	require.NoError(t, err)
	_, err = f.Write(data[:len(data)/2])
	require.NoError(t, err)
	e := wb.next(t, reload.EventFailure) // the watcher tried the half file
	assert.ErrorIs(t, e.Err, bundle.ErrFormat)
	assert.Equal(t, frontEnd(1)["index.html"], wb.index(t), "version 1 keeps serving")
	_, err = f.Write(data[len(data)/2:])
	require.NoError(t, err)
	require.NoError(t, f.Close())
	wb.next(t, reload.EventSwap)
	assert.Equal(t, frontEnd(2)["index.html"], wb.index(t))

	// SIGUSR2-style reload of unchanged content: no swap.
	require.NoError(t, wb.h.Reload(context.Background()))
	wb.next(t, reload.EventUnchanged)
	assert.Equal(t, uint64(2), wb.h.Value().Current().Seq)
}

// TestWatchKubernetesVolume serves a ConfigMap-style volume as a directory
// bundle and follows the kubelet's ..data swap.
func TestWatchKubernetesVolume(t *testing.T) {
	vol := t.TempDir()
	kubelet := func(ts string, files map[string]string, first bool) {
		writeTree(t, filepath.Join(vol, ts), files)
		if first {
			require.NoError(t, os.Symlink(ts, filepath.Join(vol, "..data")))
			for _, top := range []string{"index.html", "favicon.ico", "assets"} {
				require.NoError(t, os.Symlink(filepath.Join("..data", top), filepath.Join(vol, top)))
			}
			return
		}
		old, err := os.Readlink(filepath.Join(vol, "..data"))
		require.NoError(t, err)
		require.NoError(t, os.Symlink(ts, filepath.Join(vol, "..data_tmp")))
		require.NoError(t, os.Rename(filepath.Join(vol, "..data_tmp"), filepath.Join(vol, "..data")))
		require.NoError(t, os.RemoveAll(filepath.Join(vol, old)))
	}
	kubelet("..2026_11_24_10_00_00.000000001", frontEnd(1), true)
	wb := watchBundle(t, vol)
	b := wb.h.Value().Current()
	assert.Equal(t, frontEnd(1)["index.html"], wb.index(t))
	l, _ := wb.h.Value().Acquire()
	assert.Equal(t, len(frontEnd(1)), l.Value().Len(), "..data internals skipped: %v", l.Value().Names())
	l.Release()

	kubelet("..2026_11_24_10_05_00.000000002", frontEnd(2), false)
	e := wb.next(t, reload.EventSwap)
	assert.Equal(t, b.Seq+1, e.Seq)
	assert.Equal(t, frontEnd(2)["index.html"], wb.index(t))
	kubelet("..2026_11_24_10_10_00.000000003", frontEnd(3), false)
	wb.next(t, reload.EventSwap)
	assert.Equal(t, frontEnd(3)["index.html"], wb.index(t))
}

// TestWatchCloseEndsIt: Close ends a running Watch, which says so.
func TestWatchCloseEndsIt(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, frontEnd(1))
	swapped := make(chan struct{}, 1)
	h := bundle.New(dir, bundle.Options{OnEvent: func(e reload.Event) {
		if e.Kind == reload.EventSwap {
			swapped <- struct{}{}
		}
	}})
	done := make(chan error, 1)
	go func() { done <- h.Watch(context.Background()) }()
	select { // Watch loads first
	case <-swapped:
	case <-time.After(20 * time.Second):
		require.FailNow(t, "Watch did not load")
	}
	require.NoError(t, h.Close())
	select {
	case err := <-done:
		assert.ErrorIs(t, err, reload.ErrClosed)
	case <-time.After(20 * time.Second):
		require.FailNow(t, "Watch still running after Close")
	}
}

// TestWatchMissingDirectory: a path whose directory does not exist cannot
// be watched; Reload still says what is wrong.
func TestWatchMissingDirectory(t *testing.T) {
	h := bundle.New(filepath.Join(t.TempDir(), "no", "site.zip"), bundle.Options{})
	defer func() { assert.NoError(t, h.Close()) }()
	assert.ErrorIs(t, h.Watch(context.Background()), fs.ErrNotExist)
	err := h.Reload(context.Background())
	assert.ErrorIs(t, err, bundle.ErrFormat)
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

func TestWatchSymlinkedReleaseDir(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, filepath.Join(dir, "releases", "1"), frontEnd(1))
	writeTree(t, filepath.Join(dir, "releases", "2"), frontEnd(2))
	current := filepath.Join(dir, "current")
	require.NoError(t, os.Symlink(filepath.Join("releases", "1"), current))
	wb := watchBundle(t, current)

	// Capistrano-style: ln -s releases/2 current.tmp && mv -T current.tmp current
	require.NoError(t, os.Symlink(filepath.Join("releases", "2"), current+".tmp"))
	require.NoError(t, os.Rename(current+".tmp", current))
	wb.next(t, reload.EventSwap)
	assert.Equal(t, frontEnd(2)["index.html"], wb.index(t))
}
