package flags

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/handoff-go/handoff/reload"
)

// Defaults for the zero fields of [Options].
const (
	// DefaultDebounce is the quiet period of Watch: 20ms, short enough
	// that a change is served well within 100ms of the rename that made
	// it, long enough to fold an editor's rename-save into one load. A
	// values file is small and a partial JSON file does not parse, so a
	// short period costs at most a refused load (see package reload).
	DefaultDebounce = 20 * time.Millisecond
	// DefaultRetain is how many replaced values stay loaded for
	// Value().Rollback.
	DefaultRetain = 4
	// DefaultExposureRate is the share of keys whose exposures are
	// reported: all of them.
	DefaultExposureRate = 1.0
)

// ErrNoFile is returned by Reload and Watch of a Set made without a path.
var ErrNoFile = errors.New("flags: no values file")

// Options configures a [Set]. The zero value of each field means its
// default, so the zero Options is valid.
type Options struct {
	// YAML, when set, converts a values file whose name ends in .yaml or
	// .yml to JSON before it is parsed (flags/flagsyaml.ToJSON does). Nil
	// means such a file is refused: package flags reads JSON itself and
	// imports no YAML parser.
	YAML func(yaml []byte) (json []byte, err error)

	// OnExposure, when set, is called synchronously on the evaluating
	// goroutine for each evaluation of a key that ExposureRate samples,
	// with the flag, the variant given, the key and the values version,
	// for A/B analysis. It must not block; copy what it keeps. Nil means
	// no exposure is reported (and evaluations cost nothing more).
	OnExposure func(Exposure)
	// ExposureRate is the share, within 0–1, of keys whose exposures are
	// reported. Keys are sampled by a hash of the key alone, so a sampled
	// key's exposures are all reported, for every flag. Zero means
	// DefaultExposureRate (all); negative: none.
	ExposureRate float64

	// Retain is how many replaced values stay loaded for
	// Value().Rollback. Zero means DefaultRetain; negative: none.
	Retain int
	// History is how many versions Value().History remembers. Zero means
	// reload.DefaultHistory; negative: none.
	History int
	// Debounce is the quiet period of Watch. Zero means DefaultDebounce;
	// negative: none.
	Debounce time.Duration

	// Logger receives one record per event of the values' reload.Value
	// and its watcher ("reload: swap", "reload: failure" with the file's
	// problems under "error", ...). Nil discards them.
	Logger *slog.Logger
	// OnEvent, when set, is called synchronously for every reload.Event
	// of the values and their watcher; it must not block.
	OnEvent func(reload.Event)
}

// Set is a Registry's flags with their values, loaded from a file and
// swapped atomically when it changes (Watch) or when told to (Reload).
// Evaluations go through a [Snapshot], which leases one version of the
// values. All methods are safe for concurrent use.
type Set struct {
	reg  *Registry
	path string
	opts Options
	v    *reload.Value[*Values]

	expose     func(Exposure)
	sampleUpTo uint32 // keys whose exposure bucket is below are sampled

	mu      sync.Mutex
	w       *reload.Watcher[*Values] // serialises every load; made by the first Reload or Watch
	closed  bool
	changed chan struct{} // closed at the next swap or rollback
}

// New returns a Set of reg's flags whose values come from the file at
// path (JSON, or YAML through Options.YAML; a relative path is resolved
// now). It loads nothing: until the first Reload (or Watch) every flag
// evaluates to its default. An empty path makes a Set whose values only
// change through Value().Swap (tests, see flags/flagstest).
//
// From the first Reload or Watch on, the Set holds file watches on the
// path's directories, so that a change made while Watch is not running is
// loaded when it runs; Close releases them.
func New(reg *Registry, path string, opts Options) *Set {
	if path != "" {
		if abs, err := filepath.Abs(path); err == nil {
			path = abs
		}
	}
	if opts.Retain == 0 {
		opts.Retain = DefaultRetain
	}
	if opts.Debounce == 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.ExposureRate == 0 {
		opts.ExposureRate = DefaultExposureRate
	}
	s := &Set{reg: reg, path: path, opts: opts, changed: make(chan struct{})}
	if opts.OnExposure != nil && opts.ExposureRate > 0 {
		s.expose = opts.OnExposure
		s.sampleUpTo = threshold(min(opts.ExposureRate, 1) * 100)
	}
	s.v = reload.New(reload.Options[*Values]{
		Retain:  opts.Retain,
		History: opts.History,
		Logger:  opts.Logger,
		OnEvent: s.onEvent,
	})
	_, _ = s.v.Swap(&Values{id: "defaults"}, reload.Info{ID: "defaults", Source: "defaults"})
	return s
}

// Registry returns the Registry the Set evaluates.
func (s *Set) Registry() *Registry { return s.reg }

// Value returns the reload.Value holding the values: for Current,
// History, Rollback and Swap.
func (s *Set) Value() *reload.Value[*Values] { return s.v }

// Snapshot leases the current values: every evaluation through it sees
// them, whatever swaps happen meanwhile. Release it when done. After
// Close it returns a Snapshot that evaluates every flag to its default.
// Snapshot never blocks and does not allocate.
func (s *Set) Snapshot() Snapshot {
	l, ok := s.v.Acquire()
	if !ok {
		return Snapshot{set: s}
	}
	return Snapshot{lease: l, vals: l.Value(), set: s}
}

// Changed returns a channel that is closed at the next swap or rollback
// of the values, or at Close (after which it is always closed). Take a
// new one after each.
func (s *Set) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *Set) onEvent(e reload.Event) {
	if s.opts.OnEvent != nil {
		s.opts.OnEvent(e)
	}
	switch e.Kind {
	case reload.EventSwap, reload.EventRollback:
		s.mu.Lock()
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	case reload.EventClose:
		s.mu.Lock()
		close(s.changed) // and it stays closed: nothing changes any more
		s.mu.Unlock()
	}
}

// exposureSeed starts the hash that samples keys for exposures: "#" can
// start no flag name, so sampling is independent of every assignment.
var exposureSeed = seed("#exposure")

func (s *Set) exposed(f *flag, i int, why Reason, key string, seq uint64) {
	if s.sampleUpTo < Buckets && bucketFrom(exposureSeed, key) >= s.sampleUpTo {
		return
	}
	s.expose(Exposure{Time: time.Now(), Flag: f.info.Name, Variant: f.variants[i], Key: key, Seq: seq, Reason: why})
}

// Reload loads the values file now and swaps it in, unless its content
// is the current values' (same ID). A refused file leaves the current
// values serving; the error names the file, each flag at fault and its
// problem (see FileError), and is reported as a reload.EventFailure too.
// Reload blocks until the load is done or ctx is done. Loads never
// overlap, whether Reload or Watch starts them: concurrent calls share
// one load that starts after the last of them was made (see
// reload.Watcher.Reload). It returns ErrNoFile for a Set without a path
// and reload.ErrClosed after Close.
//
// Pass it to handoff.Options.Reload to swap on SIGUSR2.
func (s *Set) Reload(ctx context.Context) error {
	w, _, err := s.watcher()
	switch {
	case errors.Is(err, reload.ErrClosed), errors.Is(err, ErrNoFile):
		return err
	case err != nil:
		// The path cannot be watched (its directory is missing, or the
		// system is out of watches): the load says what is wrong.
		_, err = s.v.Load(ctx, s.load)
		return err
	}
	_, err = w.Reload(ctx)
	return err
}

// Watch reloads the values whenever the file changes, until ctx is done
// or the Set is closed: it watches the directory holding the file and
// each symbolic link on the way to it (an editor's rename-save, `mv new
// path`, the kubelet's ..data swap), and loads once the changes have been
// quiet for Options.Debounce. When Watch is the first to load, it loads
// at once. Failed loads are reported (reload.EventFailure, a log record)
// and the current values keep serving.
//
// Watch returns ctx's cause when ctx is done, reload.ErrClosed once the
// Set is closed, reload.ErrBusy while another Watch runs, ErrNoFile for
// a Set without a path, and an error if the path cannot be watched.
func (s *Set) Watch(ctx context.Context) error {
	w, fresh, err := s.watcher()
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

// watcher returns the Set's watcher, made now (fresh) on first use.
func (s *Set) watcher() (w *reload.Watcher[*Values], fresh bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, false, reload.ErrClosed
	case s.path == "":
		return nil, false, ErrNoFile
	case s.w != nil:
		return s.w, false, nil
	}
	s.w, err = reload.NewWatcher(s.v, s.path, s.load, reload.WatcherOptions{Debounce: s.opts.Debounce})
	if err != nil {
		return nil, false, fmt.Errorf("flags: %w", err)
	}
	return s.w, true, nil
}

// load is the Set's reload.Loader.
func (s *Set) load(ctx context.Context) (*Values, reload.Info, error) {
	info := reload.Info{Source: s.path}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return nil, info, &FileError{File: s.path, Err: err}
	}
	sum := sha256.Sum256(data)
	info.ID = hex.EncodeToString(sum[:])
	if ext := strings.ToLower(filepath.Ext(s.path)); ext == ".yaml" || ext == ".yml" {
		if s.opts.YAML == nil {
			return nil, info, &FileError{File: s.path, Err: problem(ErrSyntax, "a YAML file, and Options.YAML is not set (flags/flagsyaml.ToJSON)")}
		}
		if data, err = s.opts.YAML(data); err != nil {
			return nil, info, &FileError{File: s.path, Err: problem(ErrSyntax, "%v", err)}
		}
	}
	vals, err := Parse(s.reg, s.path, data)
	if err != nil {
		return nil, info, err
	}
	vals.id = info.ID
	return vals, info, nil
}

// Close ends Watch (which returns reload.ErrClosed) and waits for it,
// makes Reload return reload.ErrClosed, and releases the file watches.
// Snapshots taken before keep their values; later ones evaluate every
// flag to its default. Close is idempotent; its error reports a failure
// to release the file watches.
func (s *Set) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	w := s.w
	s.mu.Unlock()
	var err error
	if w != nil {
		err = w.Close()
	}
	s.v.Close()
	return err
}

type ctxKey struct{}

// NewContext returns a copy of ctx that carries snap, for code that
// evaluates flags deeper in a request (and for the OpenFeature provider,
// which then evaluates every flag of the request in one version).
func NewContext(ctx context.Context, snap Snapshot) context.Context {
	return context.WithValue(ctx, ctxKey{}, snap)
}

// FromContext returns the Snapshot NewContext put in ctx.
func FromContext(ctx context.Context) (Snapshot, bool) {
	snap, ok := ctx.Value(ctxKey{}).(Snapshot)
	return snap, ok
}

// Handler returns an http.Handler that takes a Snapshot for each request,
// puts it in the request's context (FromContext) and releases it when h
// returns: every flag of a request is evaluated in one values version.
func (s *Set) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		snap := s.Snapshot()
		defer snap.Release()
		h.ServeHTTP(w, r.WithContext(NewContext(r.Context(), snap)))
	})
}
