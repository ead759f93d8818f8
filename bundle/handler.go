package bundle

import (
	"context"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/handoff-go/handoff/reload"
)

// Handler serves the current bundle of its reload.Value over HTTP. Each
// request leases one bundle version for its whole duration, so a swap is
// atomic for every request that starts after it and invisible to those
// already running. Safe for concurrent use.
type Handler struct {
	opts Options
	v    *reload.Value[*Bundle]
	now  func() time.Time // tests
}

// New returns a Handler with no bundle yet: it answers 503 until the first
// Load, Swap or watcher reload.
func New(opts Options) *Handler {
	opts = opts.withDefaults()
	return &Handler{
		opts: opts,
		v: reload.New(reload.Options[*Bundle]{
			Release: (*Bundle).close,
			Retain:  opts.Retain,
			History: opts.History,
			Logger:  opts.Logger,
			OnEvent: opts.OnEvent,
		}),
		now: time.Now,
	}
}

// Value returns the reload.Value holding the bundles: for Current,
// History, Rollback, Swap of a bundle loaded elsewhere, and for watching.
func (h *Handler) Value() *reload.Value[*Bundle] { return h.v }

// Loader returns the reload.Loader that loads the bundle at path with the
// Handler's options.
func (h *Handler) Loader(path string) reload.Loader[*Bundle] {
	return func(ctx context.Context) (*Bundle, reload.Info, error) {
		b, err := Load(ctx, path, h.opts)
		if err != nil {
			return nil, reload.Info{Source: path}, err
		}
		return b, reload.Info{ID: b.id, Source: path}, nil
	}
}

// Load loads the bundle at path and swaps it in, unless its content is the
// same as the current bundle's (then it returns the current version). A
// refused bundle leaves the current one serving; the error says why.
func (h *Handler) Load(ctx context.Context, path string) (*reload.Version[*Bundle], error) {
	return h.v.Load(ctx, h.Loader(path))
}

// Watch returns a reload.Watcher that reloads the bundle at path when it
// changes (a directory tree, or an archive renamed into place). Call its
// Reload for the first version (and from SIGUSR2 or an admin endpoint),
// run its Run in a goroutine, and Close it.
func (h *Handler) Watch(path string, opts reload.WatcherOptions) (*reload.Watcher[*Bundle], error) {
	return reload.NewWatcher(h.v, path, h.Loader(path), opts)
}

// Close closes the Value: the Handler answers 503 from then on, and the
// bundles are dropped once the requests using them end. Idempotent.
func (h *Handler) Close() { h.v.Close() }

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
