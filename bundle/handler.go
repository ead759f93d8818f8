package bundle

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/handoff-go/handoff/reload"
)

// Defaults for the zero fields of [Options].
const (
	DefaultMaxFiles = 20_000
	DefaultMaxBytes = 256 << 20 // 256 MiB, uncompressed, in memory
	DefaultGrace    = 10 * time.Minute
	DefaultRetain   = 4
)

// Options configures a [Handler] and [Load]. The zero value is valid.
type Options struct {
	// MaxFiles is the most files a bundle may hold. Default DefaultMaxFiles.
	MaxFiles int
	// MaxBytes is the most bytes a bundle may hold, uncompressed (a bundle
	// is held in memory). Default DefaultMaxBytes.
	MaxBytes int64
	// Manifest names a file inside the bundle, in sha256sum format
	// (`sha256sum $(find . -type f) > SHA256SUMS`), that must list every
	// other file with its SHA-256. Default "": no manifest required.
	Manifest string
	// Checksum, when set, returns the expected SHA-256 (hex) of the bundle
	// at source: of the archive file, or of the bundle ID for a directory.
	// See SidecarChecksum. Default: not checked.
	Checksum func(source string) (string, error)
	// Validate, when set, is a last check on a loaded bundle (for example
	// that it has index.html); an error refuses it.
	Validate func(*Bundle) error

	// Grace is how long the files of a replaced bundle stay servable, for
	// pages loaded before a swap that ask for their hashed assets after it.
	// Only paths missing from the current bundle are looked up in replaced
	// ones. Default DefaultGrace; negative: never.
	Grace time.Duration
	// Retain is how many replaced bundles are kept in memory, for Grace and
	// for Rollback (see reload.Options.Retain). Default DefaultRetain;
	// negative: none.
	Retain int
	// Fallback, when set (typically "index.html"), is served for GET and
	// HEAD requests of unknown paths whose last segment has no extension:
	// the client-side routes of a single-page application. Missing files
	// with an extension (/assets/gone.js) still get 404.
	Fallback string
	// Immutable reports whether a file name is content-hashed, so it is
	// served with "Cache-Control: public, max-age=31536000, immutable";
	// every other file gets "no-cache" (revalidated with its ETag). Default
	// HashedName.
	Immutable func(name string) bool

	// History, Logger and OnEvent are passed to the reload.Value.
	History int
	Logger  *slog.Logger
	OnEvent func(reload.Event)
}

func (o Options) withDefaults() Options {
	if o.MaxFiles <= 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Grace == 0 {
		o.Grace = DefaultGrace
	}
	if o.Retain == 0 {
		o.Retain = DefaultRetain
	}
	if o.Retain < 0 {
		o.Retain = 0
	}
	if o.Immutable == nil {
		o.Immutable = HashedName
	}
	o.Fallback = strings.TrimPrefix(o.Fallback, "/")
	return o
}

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

var (
	hdrVary  = []string{"Accept-Encoding"}
	hdrAllow = []string{"GET, HEAD"}
)

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

func redirectToDir(w http.ResponseWriter, r *http.Request) {
	target := path.Base(r.URL.Path) + "/"
	if q := r.URL.RawQuery; q != "" {
		target += "?" + q
	}
	http.Redirect(w, r, target, http.StatusMovedPermanently)
}

func serveFile(w http.ResponseWriter, r *http.Request, f *file) {
	hdr := w.Header()
	v := f
	if f.br != nil || f.gz != nil {
		hdr["Vary"] = hdrVary
		if br, gz := acceptEncoding(r.Header.Get("Accept-Encoding")); br && f.br != nil {
			v = f.br
		} else if gz && f.gz != nil {
			v = f.gz
		}
		if v != f {
			hdr["Content-Encoding"] = v.hdrEnc
		}
	}
	hdr["Content-Type"] = f.hdrType
	hdr["Cache-Control"] = v.hdrCache
	hdr["Etag"] = v.hdrTag

	if inm := r.Header.Get("If-None-Match"); inm != "" {
		if etagMatch(inm, v.etag) {
			delete(hdr, "Content-Type")
			w.WriteHeader(http.StatusNotModified)
			return
		}
	} else if r.Header.Get("If-Match") != "" || r.Header.Get("If-Unmodified-Since") != "" {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(v.data))
		return
	}
	if r.Header.Get("Range") != "" {
		// Ranges, If-Range and multipart answers: net/http does them right.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(v.data))
		return
	}
	hdr["Content-Length"] = v.hdrLen
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		v.writeBody(w)
	}
}

// etagMatch implements the weak comparison of If-None-Match (RFC 9110
// 13.1.2) without allocating.
func etagMatch(header, etag string) bool {
	for header != "" {
		var tok string
		tok, header, _ = strings.Cut(header, ",")
		tok = strings.TrimSpace(tok)
		if tok == "*" || strings.TrimPrefix(tok, "W/") == etag {
			return true
		}
	}
	return false
}

// acceptEncoding reports whether br and gzip are acceptable (q > 0),
// without allocating.
func acceptEncoding(header string) (br, gzip bool) {
	star := false
	seenBr, seenGz := false, false
	for header != "" {
		var tok string
		tok, header, _ = strings.Cut(header, ",")
		coding, params, _ := strings.Cut(tok, ";")
		coding = strings.TrimSpace(coding)
		ok := !zeroQ(params)
		switch {
		case strings.EqualFold(coding, "br"):
			br, seenBr = ok, true
		case strings.EqualFold(coding, "gzip"), strings.EqualFold(coding, "x-gzip"):
			gzip, seenGz = ok, true
		case coding == "*":
			star = ok
		}
	}
	if star {
		br = br || !seenBr
		gzip = gzip || !seenGz
	}
	return br, gzip
}

func zeroQ(params string) bool {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(k), "q") {
			v = strings.TrimSpace(v)
			return v == "0" || strings.HasPrefix(v, "0.") && strings.Trim(v[2:], "0") == ""
		}
	}
	return false
}

// HashedName reports whether a file name looks content-hashed by a bundler
// (Vite "index-BHr7Ra_x.js", webpack "main.3f2a9c1b.js", esbuild
// "chunk-ABCD1234.js"): after a '.', '-' or '_' in the base name, before
// the extension, a token of 8 to 64 characters from [A-Za-z0-9_-] with at
// least one digit, one letter and no run of 5 lower-case letters (which
// would be a word). Precompression (.gz, .br) and .map suffixes are looked
// through. It errs towards "no": a false "no" costs a revalidation, a false
// "yes" a stale year-long cache.
func HashedName(name string) bool {
	base := path.Base(name)
	for _, s := range []string{".gz", ".br", ".map"} {
		base = strings.TrimSuffix(base, s)
	}
	stem := strings.TrimSuffix(base, path.Ext(base))
	for i := 1; i < len(stem)-1; i++ {
		if c := stem[i]; (c == '.' || c == '-' || c == '_') && hashLike(stem[i+1:]) {
			return true
		}
	}
	return false
}

func hashLike(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	digit, letter, run := false, false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			digit, run = true, 0
		case 'a' <= c && c <= 'z':
			letter = true
			if run++; run >= 5 {
				return false
			}
		case 'A' <= c && c <= 'Z':
			letter, run = true, 0
		case c == '_' || c == '-':
			run = 0
		default:
			return false
		}
	}
	return digit && letter
}
