package reload

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is the quiet period a [Watcher] waits for, after the last
// relevant file system event, before it loads.
const DefaultDebounce = 200 * time.Millisecond

// maxWatchedDirs bounds the directories one Watcher watches.
const maxWatchedDirs = 4096

// maxSymlinks bounds the symbolic links followed while resolving a path.
const maxSymlinks = 40

// ErrWatcherClosed is returned by [Watcher.Run] after [Watcher.Close].
var ErrWatcherClosed = errors.New("reload: watcher closed")

// ErrBusy is returned by [Watcher.Run] while another Run of the same
// Watcher runs: a Watcher has one watch loop at a time.
var ErrBusy = errors.New("reload: watcher already running")

// WatcherOptions configures a [Watcher]. The zero value of each field means
// its default.
type WatcherOptions struct {
	// Debounce is the quiet period: the Watcher loads once no relevant event
	// has arrived for this long. Zero means DefaultDebounce; negative: none
	// (a load after each event, loads still never overlapping). A writer
	// that pauses longer than this between two chunks of a file is seen as
	// done (see the package documentation on complete content).
	Debounce time.Duration

	// Logger receives the records of the watcher's own events
	// (EventChange, EventWatchError). Nil means the Value's Logger (which
	// may discard them). The events also go to the Value's Options.OnEvent.
	Logger *slog.Logger
}

// Watcher reloads a [Value] from a file or a directory when it changes, and
// on demand with [Watcher.Reload]. It watches, with fsnotify, the directory
// holding the path and the directory of every symbolic link the path goes
// through (so it sees editors' rename-saves, `mv new path`, and Kubernetes
// `..data` symlink swaps), and, when the path is a directory, that directory
// tree. Bursts of events are debounced into one load; loads never overlap.
//
// Create one with [NewWatcher], load the first version with Reload, start
// [Watcher.Run] in a goroutine, and [Watcher.Close] it when done. Events
// that arrive while Run is not running are kept (by the system, within its
// limits) and handled when Run next runs.
type Watcher[T any] struct {
	v        *Value[T]
	load     Loader[T]
	path     string
	debounce time.Duration
	log      *slog.Logger
	fsw      *fsnotify.Watcher

	// Set by refresh, read by relevant; both only on the Run goroutine (and
	// in NewWatcher, before Run can start).
	links   map[string]bool // symbolic links the path goes through
	final   string          // what the path resolves to
	finalIs fs.FileMode     // fs.ModeDir when final is a directory

	// Reload coalescing: sem serialises loads; a request numbered n is
	// answered by any load that started after request n was made.
	sem      chan struct{}
	requests atomic.Uint64
	answered uint64 // guarded by sem
	lastVer  *Version[T]
	lastErr  error

	mu        sync.Mutex
	closed    bool
	runDone   chan struct{}      // of the running Run, nil when none runs
	cancelRun context.CancelFunc // of the running Run
	pending   bool               // the last Run ended with a change it had not loaded
}

// NewWatcher watches path (a file or a directory, through any symbolic
// links) for v, loading with load. It does not load: call [Watcher.Reload]
// for the first version. Events that happen between NewWatcher and Run are
// kept and handled when Run starts. The directory holding path must exist.
// A Source left empty by load is set to path.
func NewWatcher[T any](v *Value[T], path string, load Loader[T], opts WatcherOptions) (*Watcher[T], error) {
	opts.Debounce = orDefault(opts.Debounce, DefaultDebounce)
	if opts.Logger == nil {
		opts.Logger = v.log
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("reload: watch %s: %w", path, err)
	}
	if _, err := os.Stat(filepath.Dir(abs)); err != nil {
		return nil, fmt.Errorf("reload: watch %s: %w", path, err)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("reload: watch %s: %w", path, err)
	}
	w := &Watcher[T]{
		v:        v,
		path:     abs,
		debounce: opts.Debounce,
		log:      opts.Logger,
		fsw:      fsw,
		sem:      make(chan struct{}, 1),
	}
	w.load = func(ctx context.Context) (T, Info, error) {
		val, info, err := load(ctx)
		if info.Source == "" {
			info.Source = abs
		}
		return val, info, err
	}
	if err := w.refresh(); err != nil {
		fsw.Close()
		return nil, fmt.Errorf("reload: watch %s: %w", path, err)
	}
	return w, nil
}

// Reload loads now and swaps the result in (see [Value.Load]): it is the
// on-demand trigger for SIGUSR2 (handoff.Options.Reload) or an admin
// endpoint. It blocks until the load is done or ctx is done. Loads
// never overlap: a Reload that arrives while a load is running waits for it
// and is then answered by the next load, shared with every other Reload
// that arrived meanwhile, so a Reload always reflects the source as it was
// after Reload was called. Safe for concurrent use; works whether or not Run
// is running.
func (w *Watcher[T]) Reload(ctx context.Context) (*Version[T], error) {
	n := w.requests.Add(1)
	select {
	case w.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	defer func() { <-w.sem }()
	if w.answered >= n {
		return w.lastVer, w.lastErr
	}
	covers := w.requests.Load()
	ver, err := w.v.Load(ctx, w.load)
	if ctx.Err() == nil { // a cancelled load answers nobody else
		w.answered, w.lastVer, w.lastErr = covers, ver, err
	}
	return ver, err
}

// Run watches until ctx is done or Close is called, loading once after
// each burst of relevant events has been quiet for the debounce period
// (EventChange). A failed load is reported by the Value (event, log) and
// the current version keeps serving. Run returns nil after Close, the
// context's cause when ctx is done, ErrWatcherClosed if called after Close
// and ErrBusy while another Run runs. Run may be called again once it has
// returned; it then loads a change the previous Run saw but had not loaded.
func (w *Watcher[T]) Run(ctx context.Context) error {
	w.mu.Lock()
	switch {
	case w.closed:
		w.mu.Unlock()
		return ErrWatcherClosed
	case w.runDone != nil:
		w.mu.Unlock()
		return ErrBusy
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	w.runDone, w.cancelRun = done, cancel
	armed := w.pending // the debounce timer runs: a change waits to be loaded
	w.mu.Unlock()
	defer func() {
		cancel()
		w.mu.Lock()
		w.runDone, w.cancelRun, w.pending = nil, nil, armed
		w.mu.Unlock()
		close(done)
	}()

	timer := time.NewTimer(w.debounce)
	if !armed {
		timer.Stop()
	}
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return context.Cause(parent)
			}
			return nil // Close
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return nil
			}
			if w.relevant(ev) {
				timer.Reset(w.debounce)
				armed = true
			}
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return nil
			}
			w.report(Event{Kind: EventWatchError, Err: fmt.Errorf("reload: watch %s: %w", w.path, err)})
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				timer.Reset(w.debounce) // events were lost: look again
				armed = true
			}
		case <-timer.C:
			if err := w.refresh(); err != nil {
				w.report(Event{Kind: EventWatchError, Err: fmt.Errorf("reload: watch %s: %w", w.path, err)})
			}
			w.report(Event{Kind: EventChange})
			// Errors are reported by the Value (event and log).
			_, _ = w.Reload(ctx)
			armed = ctx.Err() != nil // a load Run's end cancelled is still to do
		}
	}
}

// report sends one of the watcher's own events to the Value's OnEvent and
// to the watcher's Logger.
func (w *Watcher[T]) report(e Event) {
	e.Time, e.Source = w.v.now(), w.path
	report(w.log, w.v.opts.OnEvent, e)
}

// Close stops Run, waits for it to return, and releases the watches. A
// Reload that Run started is cancelled through its context. Close is
// idempotent (later calls return nil); it must not be called from the
// Loader. The error is the system's, if releasing the watches failed.
func (w *Watcher[T]) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	done, cancel := w.runDone, w.cancelRun
	w.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	if err := w.fsw.Close(); err != nil {
		return fmt.Errorf("reload: close watcher of %s: %w", w.path, err)
	}
	return nil
}

// relevant reports whether ev can change what the watched path holds.
func (w *Watcher[T]) relevant(ev fsnotify.Event) bool {
	name := filepath.Clean(ev.Name)
	if name == w.final || w.links[name] {
		return true
	}
	return w.finalIs.IsDir() && strings.HasPrefix(name, w.final+string(filepath.Separator))
}

// refresh resolves the path again and brings the set of watched directories
// in line: after a symlink swap the new target directory is watched and the
// old one dropped; in a watched tree, new subdirectories are added.
func (w *Watcher[T]) refresh() error {
	links, final, err := resolve(w.path)
	if err != nil {
		return err
	}
	w.links = make(map[string]bool, len(links))
	want := map[string]bool{filepath.Dir(final): true}
	for _, l := range links {
		w.links[l] = true
		want[filepath.Dir(l)] = true
	}
	w.final, w.finalIs = final, 0
	var walkErr error
	if fi, err := os.Stat(final); err == nil && fi.IsDir() {
		w.finalIs = fs.ModeDir
		walkErr = filepath.WalkDir(final, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // vanished while walking: the next event says more
			}
			if d.IsDir() {
				if len(want) >= maxWatchedDirs {
					return fmt.Errorf("more than %d directories under %s", maxWatchedDirs, final)
				}
				want[p] = true
			}
			return nil
		})
	}
	have := w.fsw.WatchList()
	for _, p := range have {
		if !want[p] {
			_ = w.fsw.Remove(p) // may be gone already
		}
	}
	var errs []error
	for p := range want {
		if slices.Contains(have, p) {
			continue
		}
		if err := w.fsw.Add(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, walkErr)...)
}

// resolve follows path through symbolic links, component by component, and
// returns every link it went through and the path it ends at. A component
// that does not exist ends the walk: the rest is joined lexically.
func resolve(path string) (links []string, final string, err error) {
	todo := splitPath(path)
	cur := string(filepath.Separator)
	if v := filepath.VolumeName(path); v != "" {
		cur = v + cur
	}
	n := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if err != nil {
			return links, filepath.Join(append([]string{next}, todo...)...), nil
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if n++; n > maxSymlinks {
			return nil, "", fmt.Errorf("resolve %s: too many symbolic links", path)
		}
		links = append(links, next)
		target, err := os.Readlink(next)
		if err != nil {
			return nil, "", fmt.Errorf("resolve %s: %w", path, err)
		}
		if filepath.IsAbs(target) {
			cur = string(filepath.Separator)
			if v := filepath.VolumeName(target); v != "" {
				cur = v + cur
			}
		}
		todo = append(splitPath(target), todo...)
	}
	return links, cur, nil
}

func splitPath(p string) []string {
	p = p[len(filepath.VolumeName(p)):]
	var out []string
	for _, s := range strings.Split(filepath.ToSlash(p), "/") {
		if s != "" && s != "." {
			out = append(out, s)
		}
	}
	return out
}
