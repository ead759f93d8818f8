package reload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero fields of [Options].
const (
	// DefaultHistory is the number of versions [Value.History] remembers.
	DefaultHistory = 16
	// DefaultRetain is the number of replaced versions kept loaded: none,
	// because what a version holds (memory, a process) is the caller's to
	// weigh; package bundle, whose versions are only memory, keeps some.
	DefaultRetain = 0
	// DefaultRetainFor is how long a replaced version is kept loaded beyond
	// the Retain most recent: not at all.
	DefaultRetainFor time.Duration = 0
)

// MaxRetainedFor bounds the versions [Options.RetainFor] keeps: a version
// kept only because it was replaced recently is released once
// MaxRetainedFor more recently replaced versions are retained, however
// recent it is, so that a burst of swaps cannot hold an unbounded number
// of versions. [Options.Retain] is not bounded by it.
const MaxRetainedFor = 32

// ErrClosed is returned by Swap, Load, Rollback and RollbackTo after [Value.Close].
var ErrClosed = errors.New("reload: value closed")

// ErrNotRetained is returned by Rollback and RollbackTo when the version asked
// for is not retained (see [Options.Retain]).
var ErrNotRetained = errors.New("reload: version not retained")

// Options configures a [Value]. The zero value of each field means its
// default, so the zero Options is valid: no validation, no release hook,
// DefaultHistory, no retained versions, logs discarded.
type Options[T any] struct {
	// Validate, when set, is called by Swap and Load before a value becomes
	// current. A non-nil error keeps the current version serving and is
	// returned (wrapped) to the caller. It runs outside any lock, on the
	// caller's goroutine, and may be slow.
	Validate func(T) error

	// Release, when set, is called exactly once for every version when it is
	// no longer current nor retained (it has been replaced, rolled away from,
	// or the Value was closed) and its last lease has ended. It runs on the
	// goroutine that ended the last reference: a Swap, Rollback or Close
	// caller, or the caller of the last [Lease.Release].
	//
	// Load also hands values it loaded but did not make current (a failed
	// validation, or the same ID as the current version) to Release, so that
	// loaders which open resources need no second clean-up path. Swap never
	// does: a Swap caller keeps ownership of a value Swap refused.
	Release func(T)

	// History is the number of versions remembered by [Value.History]
	// (sequence, ID, source, load and replacement time). Zero means
	// DefaultHistory; negative: none.
	History int

	// Retain is the number of replaced versions kept loaded (not released) so
	// that [Value.Rollback] can make one current again at once, without going
	// back to a source that a bad deploy has usually overwritten, and so that
	// readers can still reach them with [Value.AcquirePrevious]. Zero means
	// DefaultRetain (none); negative: none. A version that is not retained
	// is released as soon as it is replaced and its leases end. Each
	// retained version costs whatever T holds (memory, a process...).
	Retain int

	// RetainFor also keeps a replaced version loaded, beyond the Retain most
	// recently replaced, until it has been replaced for this long, and
	// while fewer than MaxRetainedFor more recent ones are retained: a
	// count alone lets a burst of swaps push out a version that readers
	// were handed a moment ago. Versions past their time are released at
	// the next swap or rollback (or at Close), not by a timer. Zero means
	// DefaultRetainFor (none); negative: none.
	RetainFor time.Duration

	// Logger receives one record per event (see [Event]): swaps, failures
	// and rollbacks at Info, Error and Warn, unchanged loads and releases
	// at Debug. Nil discards them.
	Logger *slog.Logger

	// OnEvent, when set, is called synchronously for every event (swap,
	// unchanged load, failure, rollback, release, close, and the events of
	// a Watcher of the Value), after its log record, after the state change
	// and outside the Value's lock (so it may call any method of the
	// Value). It must not block. It can be called concurrently from several
	// goroutines; [Event.Seq] orders versions.
	OnEvent func(Event)
}

// Info describes where a value comes from.
type Info struct {
	// ID identifies the content: a content hash, or the caller's own id.
	// Load treats a value whose non-empty ID equals the current version's ID
	// as unchanged and does not swap it in.
	ID string
	// Source is a path or a description of where the value was loaded from.
	Source string
}

// Version is one value that has been made current by [Value.Swap] or
// [Value.Load]. Its exported fields never change; the value itself is
// reached through a [Lease].
type Version[T any] struct {
	Seq      uint64    // 1 for the first version of a Value, then +1 per swap
	ID       string    // Info.ID
	Source   string    // Info.Source
	LoadedAt time.Time // when it was swapped in

	val      T
	owner    *Value[T]
	refs     atomic.Int64 // 1 while current or retained, +1 per lease
	replaced atomic.Int64 // unix nanoseconds of the last replacement, 0 while current
	released atomic.Bool
}

// ReplacedAt reports when the version last stopped being current, or the
// zero time while it is current (a rollback makes a version current again).
func (ver *Version[T]) ReplacedAt() time.Time {
	if ns := ver.replaced.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Released reports whether the version has been handed to Options.Release
// (or would have been, with no Release hook): nothing can use it any more.
func (ver *Version[T]) Released() bool { return ver.released.Load() }

// tryRef takes a reference unless the version has already dropped to zero
// references (and so is released or being released): a released version is
// never resurrected.
func (ver *Version[T]) tryRef() bool {
	for {
		n := ver.refs.Load()
		if n <= 0 {
			return false
		}
		if ver.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (ver *Version[T]) unref() {
	n := ver.refs.Add(-1)
	switch {
	case n == 0:
		ver.owner.release(ver)
	case n < 0:
		panic("reload: Lease released more times than it was acquired")
	}
}

// Lease pins one version of a Value: while a lease is held its version is
// not released, even if it has been replaced. A Lease is a small value type,
// so Acquire allocates nothing.
//
// Every Lease obtained from Acquire or AcquirePrevious must be released
// exactly once with [Lease.Release], typically with defer right after a
// successful Acquire. Releasing a lease twice, or a copy of a released
// lease, corrupts the reference count (a count that goes negative panics).
// The zero Lease holds nothing; its Release does nothing.
type Lease[T any] struct {
	ver *Version[T]
}

// Value returns the leased value.
func (l Lease[T]) Value() T {
	if l.ver == nil {
		var zero T
		return zero
	}
	return l.ver.val
}

// Version returns the leased version (nil for the zero Lease).
func (l Lease[T]) Version() *Version[T] { return l.ver }

// Release ends the lease. When it was the last reference to a version that
// is no longer current nor retained, Release calls Options.Release for it,
// on the calling goroutine.
func (l Lease[T]) Release() {
	if l.ver != nil {
		l.ver.unref()
	}
}

// state is an immutable snapshot, replaced as a whole (copy on write) under
// Value.mu, read without locks.
type state[T any] struct {
	cur      *Version[T]   // nil before the first swap and after Close
	retained []*Version[T] // most recently replaced first
}

// Value is a versioned hot-swappable value: Swap (or Load) validates a new
// value and makes it current atomically; readers Acquire a lease on the
// current version, keep it for the length of their work (a request sees the
// version it started with), and Release it; a replaced version is released,
// through Options.Release, when its last lease ends.
//
// All methods are safe for concurrent use. Acquire and Lease methods take no
// lock and allocate nothing. Create Values with [New]: the zero Value is not
// usable.
type Value[T any] struct {
	opts  Options[T]
	log   *slog.Logger
	state atomic.Pointer[state[T]]

	mu      sync.Mutex // serialises Swap, Rollback, Close and history
	seq     uint64
	closed  bool
	history []*Version[T] // oldest first, at most opts.History

	live     atomic.Int64 // versions created and not yet released
	closedCh chan struct{}
	doneCh   chan struct{} // closed when closed and live == 0
	doneOnce sync.Once

	now func() time.Time // time.Now; tests replace it (export_test.go)
}

// New returns a Value with no version yet: Acquire reports false until the
// first successful Swap or Load. opts is copied; a zero Options is valid.
func New[T any](opts Options[T]) *Value[T] {
	opts.History = orDefault(opts.History, DefaultHistory)
	opts.Retain = orDefault(opts.Retain, DefaultRetain)
	opts.RetainFor = orDefault(opts.RetainFor, DefaultRetainFor)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	v := &Value[T]{
		opts:     opts,
		log:      log,
		closedCh: make(chan struct{}),
		doneCh:   make(chan struct{}),
		now:      time.Now,
	}
	v.state.Store(&state[T]{})
	return v
}

// orDefault applies the convention of every Options field: zero means def,
// negative means none.
func orDefault[N int | time.Duration](n, def N) N {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

// Acquire leases the current version. It reports false, with the zero
// Lease, before the first swap and after Close. A true result must be
// matched by exactly one [Lease.Release]. Acquire never blocks and does not
// allocate.
func (v *Value[T]) Acquire() (Lease[T], bool) {
	for {
		cur := v.state.Load().cur
		if cur == nil {
			return Lease[T]{}, false
		}
		if cur.tryRef() {
			return Lease[T]{ver: cur}, true
		}
		// cur was replaced and released between the two loads: the state
		// now holds its successor, so retrying makes progress.
	}
}

// AcquirePrevious leases the i-th retained version, i = 0 being the one
// replaced most recently (see [Options.Retain] and [Options.RetainFor]). It reports false when there
// is no such version. Like Acquire, it allocates nothing and a true result
// must be matched by exactly one Release.
func (v *Value[T]) AcquirePrevious(i int) (Lease[T], bool) {
	for {
		s := v.state.Load()
		if i < 0 || i >= len(s.retained) {
			return Lease[T]{}, false
		}
		ver := s.retained[i]
		if ver.tryRef() {
			return Lease[T]{ver: ver}, true
		}
	}
}

// Current returns the current version, or nil before the first swap and
// after Close. It does not lease the version: use it for its metadata only.
func (v *Value[T]) Current() *Version[T] { return v.state.Load().cur }

// Swap validates val (Options.Validate) and makes it the current version
// atomically: every Acquire that starts after Swap returns sees it. The
// version it replaces is retained (Options.Retain) or released once its
// last lease ends. If validation fails, or the Value is closed, the current
// version stays, the error is returned, reported (event and log), and the
// caller keeps ownership of val.
//
// Swap does not compare IDs: swapping a value with the current ID makes a
// new version. Use Load for "swap only if the content changed".
func (v *Value[T]) Swap(val T, info Info) (*Version[T], error) {
	if v.opts.Validate != nil {
		if err := v.opts.Validate(val); err != nil {
			err = fmt.Errorf("reload: validate %s: %w", describe(info), err)
			v.failed(info, err, 0)
			return nil, err
		}
	}
	return v.swap(val, info, 0)
}

func (v *Value[T]) swap(val T, info Info, took time.Duration) (*Version[T], error) {
	now := v.now()
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil, ErrClosed
	}
	v.seq++
	ver := &Version[T]{Seq: v.seq, ID: info.ID, Source: info.Source, LoadedAt: now, val: val, owner: v}
	ver.refs.Store(1)
	v.live.Add(1)
	old := v.state.Load()
	next := &state[T]{cur: ver}
	var dropped []*Version[T]
	if old.cur != nil {
		old.cur.replaced.Store(now.UnixNano())
		next.retained, dropped = v.retain(old.cur, old.retained, v.opts.Retain, now)
	}
	v.state.Store(next)
	v.remember(ver)
	v.mu.Unlock()

	var prev uint64
	if old.cur != nil {
		prev = old.cur.Seq
	}
	v.emit(Event{Kind: EventSwap, Time: now, Duration: took, Seq: ver.Seq, ID: ver.ID, Source: ver.Source, Previous: prev})
	for _, d := range dropped {
		d.unref()
	}
	return ver, nil
}

// retain puts front (just replaced) ahead of list (the retained versions,
// most recently replaced first) and returns the first keep of them, plus
// those after them replaced less than RetainFor before now (up to
// MaxRetainedFor in all), and what falls off.
func (v *Value[T]) retain(front *Version[T], list []*Version[T], keep int, now time.Time) (kept, dropped []*Version[T]) {
	all := make([]*Version[T], 0, len(list)+1)
	all = append(all, front)
	all = append(all, list...)
	n := min(keep, len(all))
	for v.opts.RetainFor > 0 && n < len(all) && n < MaxRetainedFor &&
		now.Sub(all[n].ReplacedAt()) < v.opts.RetainFor {
		n++
	}
	return all[:n:n], all[n:]
}

// remember appends ver to the history; v.mu is held.
func (v *Value[T]) remember(ver *Version[T]) {
	for _, h := range v.history {
		if h == ver {
			return
		}
	}
	v.history = append(v.history, ver)
	if extra := len(v.history) - v.opts.History; extra > 0 {
		v.history = append(v.history[:0:0], v.history[extra:]...)
	}
}

// Loader loads a value and describes it. A Loader should return promptly
// when ctx is done. Its error need not name the source: Load wraps it in
// one that names info's Source and ID. A Loader that panics is not recovered: the panic
// propagates to the goroutine that called Load or Reload, as any panic in
// Go would, because a recovered panic would leave the loader's own state
// unknown.
type Loader[T any] func(ctx context.Context) (T, Info, error)

// Load calls load and swaps its result in, unless it fails, fails
// validation, or carries the same non-empty ID as the current version. Then
// the current version stays: on failure Load reports the error (event, log)
// and returns it; on an unchanged ID it returns the current version and a
// nil error. Values loaded but not made current are handed to
// Options.Release. Load does not serialise concurrent calls; a [Watcher]
// does.
func (v *Value[T]) Load(ctx context.Context, load Loader[T]) (*Version[T], error) {
	if v.isClosed() {
		return nil, ErrClosed
	}
	start := v.now()
	val, info, err := load(ctx)
	took := v.now().Sub(start)
	if err != nil {
		err = fmt.Errorf("reload: load %s: %w", describe(info), err)
		v.failed(info, err, took)
		return nil, err
	}
	if cur := v.Current(); cur != nil && info.ID != "" && cur.ID == info.ID {
		v.emit(Event{Kind: EventUnchanged, Time: v.now(), Duration: took, Seq: cur.Seq, ID: info.ID, Source: info.Source})
		v.discard(val)
		return cur, nil
	}
	if v.opts.Validate != nil {
		if err := v.opts.Validate(val); err != nil {
			err = fmt.Errorf("reload: validate %s: %w", describe(info), err)
			v.failed(info, err, took)
			v.discard(val)
			return nil, err
		}
	}
	ver, err := v.swap(val, info, took)
	if err != nil {
		v.discard(val)
	}
	return ver, err
}

func (v *Value[T]) discard(val T) {
	if v.opts.Release != nil {
		v.opts.Release(val)
	}
}

func (v *Value[T]) isClosed() bool {
	select {
	case <-v.closedCh:
		return true
	default:
		return false
	}
}

func (v *Value[T]) failed(info Info, err error, took time.Duration) {
	var cur uint64
	if c := v.Current(); c != nil {
		cur = c.Seq
	}
	v.emit(Event{Kind: EventFailure, Time: v.now(), Duration: took, Err: err, ID: info.ID, Source: info.Source, Previous: cur})
}

// Rollback makes the most recently replaced retained version current again
// (see [Options.Retain]); the version it replaces becomes retained in turn,
// so a second Rollback rolls forward. The version keeps its Seq and ID and
// is not validated again. It returns ErrNotRetained when nothing is
// retained and ErrClosed after Close.
func (v *Value[T]) Rollback() (*Version[T], error) {
	return v.rollback(func(s *state[T]) int {
		if len(s.retained) == 0 {
			return -1
		}
		return 0
	}, "no replaced version is retained (Options.Retain)")
}

// RollbackTo is Rollback to the retained version with the given Seq.
func (v *Value[T]) RollbackTo(seq uint64) (*Version[T], error) {
	return v.rollback(func(s *state[T]) int {
		for i, r := range s.retained {
			if r.Seq == seq {
				return i
			}
		}
		return -1
	}, fmt.Sprintf("version %d is not retained", seq))
}

func (v *Value[T]) rollback(pick func(*state[T]) int, why string) (*Version[T], error) {
	now := v.now()
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return nil, ErrClosed
	}
	old := v.state.Load()
	i := pick(old)
	if i < 0 || old.cur == nil {
		v.mu.Unlock()
		err := fmt.Errorf("reload: rollback: %s: %w", why, ErrNotRetained)
		v.emit(Event{Kind: EventFailure, Time: now, Err: err})
		return nil, err
	}
	target := old.retained[i]
	rest := make([]*Version[T], 0, len(old.retained)-1)
	rest = append(rest, old.retained[:i]...)
	rest = append(rest, old.retained[i+1:]...)
	old.cur.replaced.Store(now.UnixNano())
	target.replaced.Store(0)
	next := &state[T]{cur: target}
	var dropped []*Version[T]
	// The version rolled away from is kept ahead of the others so that a
	// second Rollback returns to it, even with Retain = 1.
	next.retained, dropped = v.retain(old.cur, rest, max(v.opts.Retain, 1), now)
	v.state.Store(next)
	v.remember(target)
	v.mu.Unlock()

	v.emit(Event{Kind: EventRollback, Time: now, Seq: target.Seq, ID: target.ID, Source: target.Source, Previous: old.cur.Seq})
	for _, d := range dropped {
		d.unref()
	}
	return target, nil
}

// Close makes the Value unusable: Acquire reports false, Swap, Load and
// Rollback return ErrClosed. The current and retained versions are released
// when their last leases end; Close does not wait for that (see [Value.Done]).
// Close is idempotent.
func (v *Value[T]) Close() {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return
	}
	v.closed = true
	close(v.closedCh)
	old := v.state.Load()
	v.state.Store(&state[T]{})
	v.mu.Unlock()

	now := v.now()
	v.emit(Event{Kind: EventClose, Time: now})
	if old.cur != nil {
		old.cur.replaced.Store(now.UnixNano())
		old.cur.unref()
	}
	for _, r := range old.retained {
		r.unref()
	}
	v.checkDone()
}

// Done returns a channel that is closed once Close has been called and every
// version has been released (all leases ended, all Release hooks returned).
func (v *Value[T]) Done() <-chan struct{} { return v.doneCh }

func (v *Value[T]) checkDone() {
	if v.isClosed() && v.live.Load() == 0 {
		v.doneOnce.Do(func() { close(v.doneCh) })
	}
}

// release runs once per version, when its reference count reaches zero.
func (v *Value[T]) release(ver *Version[T]) {
	ver.released.Store(true)
	if v.opts.Release != nil {
		v.opts.Release(ver.val)
	}
	var zero T
	ver.val = zero // let the value be collected even if the Version is kept
	v.emit(Event{Kind: EventRelease, Time: v.now(), Seq: ver.Seq, ID: ver.ID, Source: ver.Source})
	v.live.Add(-1)
	v.checkDone()
}

func (v *Value[T]) emit(e Event) { report(v.log, v.opts.OnEvent, e) }

// Record describes one version remembered by History.
type Record struct {
	Seq        uint64
	ID         string
	Source     string
	LoadedAt   time.Time
	ReplacedAt time.Time // zero while current
	Current    bool      // the version Acquire returns
	Retained   bool      // available to Rollback and AcquirePrevious
	Released   bool      // handed to Options.Release; gone
}

// History returns the last Options.History versions that were made current,
// newest (highest Seq) first.
func (v *Value[T]) History() []Record {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := v.state.Load()
	out := make([]Record, 0, len(v.history))
	for i := len(v.history) - 1; i >= 0; i-- {
		ver := v.history[i]
		r := Record{
			Seq: ver.Seq, ID: ver.ID, Source: ver.Source, LoadedAt: ver.LoadedAt,
			ReplacedAt: ver.ReplacedAt(), Current: ver == s.cur, Released: ver.Released(),
		}
		for _, x := range s.retained {
			r.Retained = r.Retained || x == ver
		}
		out = append(out, r)
	}
	// Sorted by Seq, newest first: a rollback re-makes an old version current
	// without renumbering it.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Seq > out[j-1].Seq; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func describe(info Info) string {
	switch {
	case info.Source != "" && info.ID != "":
		return info.Source + " (" + info.ID + ")"
	case info.Source != "":
		return info.Source
	case info.ID != "":
		return info.ID
	default:
		return "value"
	}
}
