package bundle

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/handoff-go/handoff/reload"
)

// Handler serves the current bundle loaded from its path over HTTP, and
// swaps it for a new version when told to (Reload) or when the path
// changes (Watch). Each request leases one bundle version for its whole
// duration, so a swap is atomic for every request that starts after it and
// invisible to those already running. All methods are safe for concurrent
// use.
type Handler struct {
	path string
	opts Options
	v    *reload.Value[*Bundle]
	now  func() time.Time // time.Now; tests replace it (export_test.go)

	mu     sync.Mutex
	w      *reload.Watcher[*Bundle] // serialises every load; made by the first Reload or Watch
	closed bool
}

// New returns a Handler for the bundle at path (a directory, a .zip or a
// .tar.gz, through any symbolic links; a relative path is resolved now).
// It loads nothing: it answers 503 until the first Reload (or Watch) has
// loaded a bundle. From the first Reload or Watch on, it holds file
// watches on the path's directories, so that a change made while Watch is
// not running is loaded when it runs; Close releases them.
func New(path string, opts Options) *Handler {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	opts = opts.withDefaults()
	return &Handler{
		path: path,
		opts: opts,
		v: reload.New(reload.Options[*Bundle]{
			Release:   (*Bundle).close,
			Retain:    opts.Retain,
			RetainFor: opts.Grace,
			History:   opts.History,
			Logger:    opts.Logger,
			OnEvent:   opts.OnEvent,
		}),
		now: time.Now,
	}
}

// Value returns the reload.Value holding the bundles: for Current,
// History and Rollback.
func (h *Handler) Value() *reload.Value[*Bundle] { return h.v }

// Reload loads the bundle at the Handler's path now and swaps it in,
// unless its content is the current bundle's. A refused bundle leaves the
// current one serving; the error says why, and is reported as a
// reload.EventFailure too. Reload blocks until the load is done or ctx is
// done. Loads never overlap, whether Reload or Watch starts them:
// concurrent calls share one load that starts after the last of them was
// made (see reload.Watcher.Reload). After Close it returns
// reload.ErrClosed.
//
// Pass it to handoff.Options.Reload to swap on SIGUSR2.
func (h *Handler) Reload(ctx context.Context) error {
	w, _, err := h.watcher()
	switch {
	case errors.Is(err, reload.ErrClosed):
		return err
	case err != nil:
		// The path cannot be watched (the directory holding it is missing,
		// or the system is out of watches): with no watcher there is no
		// load to share or to wait for, and the load reports what is wrong.
		_, err = h.v.Load(ctx, h.load)
		return err
	}
	_, err = w.Reload(ctx)
	return err
}

// Watch reloads the bundle whenever it changes, until ctx is done or the
// Handler is closed. It watches the directory holding the path, each
// symbolic link on the way to it (so a symlink swap, or the kubelet's
// ..data swap, is seen) and, for a directory bundle, the tree under it, and
// loads once the changes have been quiet for Options.Debounce (see package
// reload on complete content). When Watch is the first to load, it loads
// at once, so that a change made before it started is not missed. Failed
// loads are reported (reload.EventFailure, a log record) and the current
// bundle keeps serving.
//
// Watch returns ctx's cause when ctx is done, reload.ErrClosed once the
// Handler is closed, reload.ErrBusy while another Watch runs, and an error
// if the path cannot be watched (the directory holding it must exist).
func (h *Handler) Watch(ctx context.Context) error {
	w, fresh, err := h.watcher()
	if err != nil {
		return err
	}
	if fresh {
		_, _ = w.Reload(ctx) // reported by the Value (event, log)
	}
	switch err := w.Run(ctx); {
	case err == nil, errors.Is(err, reload.ErrWatcherClosed):
		return reload.ErrClosed
	default:
		return err
	}
}

// watcher returns the Handler's watcher, made now (fresh) if this is its
// first use: it watches from then on, whether Watch runs or not, so that
// no change between two Watch calls, or between a Reload and Watch, is
// lost.
func (h *Handler) watcher() (w *reload.Watcher[*Bundle], fresh bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return nil, false, reload.ErrClosed
	case h.w != nil:
		return h.w, false, nil
	}
	h.w, err = reload.NewWatcher(h.v, h.path, h.load, reload.WatcherOptions{Debounce: h.opts.Debounce})
	if err != nil {
		return nil, false, fmt.Errorf("bundle: %w", err)
	}
	return h.w, true, nil
}

// load is the Handler's reload.Loader. Its errors do not name the path:
// reload does.
func (h *Handler) load(ctx context.Context) (*Bundle, reload.Info, error) {
	b, err := load(ctx, h.path, h.opts, "bundle: ")
	if err != nil {
		return nil, reload.Info{Source: h.path}, err
	}
	return b, reload.Info{ID: b.id, Source: h.path}, nil
}

// Close makes the Handler answer 503, ends Watch (which returns
// reload.ErrClosed) and waits for it, and makes Reload return
// reload.ErrClosed. The bundles are released once the requests using them
// end. Close is idempotent; its error reports a failure to release the
// file watches.
func (h *Handler) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	w := h.w
	h.mu.Unlock()
	var err error
	if w != nil {
		err = w.Close()
	}
	h.v.Close()
	return err
}

// ServeHTTP serves a file of the current bundle: GET and HEAD, ETag and
// If-None-Match, range requests, precompressed .br/.gz siblings chosen by
// Accept-Encoding, "/" and "dir/" served by their index.html. A path
// missing from the current bundle is looked up in the bundles replaced
// within Grace, then answered with the Fallback document if set, else 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = hdrAllow
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	lease, ok := h.v.Acquire()
	if !ok {
		http.Error(w, "no bundle loaded", http.StatusServiceUnavailable)
		return
	}
	defer lease.Release()
	b := lease.Value()

	p := r.URL.Path
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	name := path.Clean(p)[1:]
	f := b.files[name]
	if f == nil {
		if idx := b.index[name]; idx != nil {
			if name != "" && !strings.HasSuffix(p, "/") {
				redirectToDir(w, r)
				return
			}
			f = idx
		}
	}
	if f == nil {
		if old, ok := h.previous(name); ok {
			defer old.Release()
			f = old.Value().files[name]
		}
	}
	if f == nil && h.opts.Fallback != "" && path.Ext(name) == "" {
		f = b.files[h.opts.Fallback]
	}
	if f == nil {
		http.NotFound(w, r)
		return
	}
	serveFile(w, r, f)
}

// previous leases the most recently replaced bundle, within Grace, that has
// the file.
func (h *Handler) previous(name string) (reload.Lease[*Bundle], bool) {
	if h.opts.Grace < 0 {
		return reload.Lease[*Bundle]{}, false
	}
	now := h.now()
	for i := 0; ; i++ {
		l, ok := h.v.AcquirePrevious(i)
		if !ok {
			return l, false
		}
		if now.Sub(l.Version().ReplacedAt()) > h.opts.Grace {
			// Retained bundles are ordered by replacement time: the rest
			// are older still.
			l.Release()
			return reload.Lease[*Bundle]{}, false
		}
		if l.Value().files[name] != nil {
			return l, true
		}
		l.Release()
	}
}
