package plugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoff-go/handoff/reload"
)

// Manager runs one go-plugin plugin and swaps versions of it without
// failing calls: a new version is staged, started, handshaken, dispensed and
// health-checked before it takes any call; calls already running on the old
// version finish there; the old process is killed once they have (or at
// Options.DrainTimeout). A crashed plugin is restarted with backoff. A new
// version can first take a share of the calls as a canary.
//
// All methods are safe for concurrent use. Call takes no lock.
type Manager[T any] struct {
	opts Options[T]
	log  *slog.Logger
	val  *reload.Value[*route[T]]
	sp   *spawner
	priv *privateDir // nil until New creates it

	ctx      context.Context // ends at Close
	cancel   context.CancelFunc
	closed   chan struct{}
	once     sync.Once
	closeErr error
	wg       sync.WaitGroup // retirements and exit watchers
	loopWG   sync.WaitGroup // the loop

	// watchMu guards closing and the Add of watchers, so that no Watch
	// starts once Close waits for them.
	watchMu  sync.Mutex
	closing  bool
	watchers sync.WaitGroup // running Watch calls

	changed atomic.Pointer[chan struct{}] // closed at every route change
	rr      atomic.Uint64                 // canary choice for calls without a key

	crashCh   chan *instance[T]
	verdictCh chan struct{}

	// opMu serialises the changes of route; route is the current one.
	opMu    sync.Mutex
	route   *route[T]
	prev    *version // the stable version before the current one
	backoff time.Duration

	mu      sync.Mutex // guards the version records and history
	history []*version
	seq     int
}

// New starts the plugin at opts.Path and returns once it is serving, or
// returns the reason it could not start (a *LoadError if the plugin was
// refused). ctx bounds the first start. Before it starts anything, New
// removes the private directories of Managers whose host died without
// closing them (EventReclaimed). The Manager must be closed with Close.
func New[T any](ctx context.Context, opts Options[T]) (*Manager[T], error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	m := newUnstarted(opts)
	reclaimStale(m.emit)
	if err := m.openDirs(); err != nil {
		return nil, errors.Join(err, m.Close())
	}
	m.sp = newSpawner()
	m.opMu.Lock()
	_, err = m.swapLocked(ctx, opts.Path, false)
	m.opMu.Unlock()
	if err != nil {
		return nil, errors.Join(err, m.Close())
	}
	m.loopWG.Add(1)
	go m.loop()
	return m, nil
}

// newUnstarted returns a Manager with nothing started. opts has its defaults.
func newUnstarted[T any](opts Options[T]) *Manager[T] {
	m := &Manager[T]{
		opts:      opts,
		log:       opts.Logger.With("plugin", opts.Name),
		closed:    make(chan struct{}),
		crashCh:   make(chan *instance[T], 4),
		verdictCh: make(chan struct{}, 1),
	}
	ch := make(chan struct{})
	m.changed.Store(&ch)
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.val = reload.New(reload.Options[*route[T]]{
		// Only setRoute swaps; Watch's loads report "unchanged" with no
		// value (see watchLoad). Refuse a nil route all the same.
		Validate: func(r *route[T]) error {
			if r == nil {
				return errors.New("plugin: no route")
			}
			return nil
		},
		Release: func(r *route[T]) { r.release() },
		History: 1,
	})
	return m
}

// openDirs creates the private directory and, if one is given, the
// staging directory.
func (m *Manager[T]) openDirs() error {
	d, err := newPrivateDir()
	if err != nil {
		return err
	}
	m.priv = d
	if m.opts.StageDir == "" {
		m.opts.StageDir = d.path
		return nil
	}
	if err := os.MkdirAll(m.opts.StageDir, 0o700); err != nil {
		return fmt.Errorf("plugin: staging directory: %w", err)
	}
	return nil
}

// opContext bounds an operation by ctx and by Close.
func (m *Manager[T]) opContext(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(m.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

// lockOp takes opMu for a caller-initiated operation, or fails with ErrBusy.
func (m *Manager[T]) lockOp() error {
	select {
	case <-m.closed:
		return ErrClosed
	default:
	}
	if !m.opMu.TryLock() {
		return ErrBusy
	}
	if m.route == nil { // closed meanwhile
		m.opMu.Unlock()
		return ErrClosed
	}
	return nil
}

// Call runs fn on the plugin version that is current for key when the call
// starts, and keeps that version's process alive until fn returns: every
// RPC fn makes is answered by that one version, even if a swap happens
// meanwhile. key chooses between the stable version and a canary by a
// stable hash, so one key (a user, a tenant) stays on one version; calls
// with an empty key are spread by count.
//
// While the process that would answer is being restarted after a crash,
// Call waits for it (bounded by ctx) or fails with ErrRestarting, according
// to Options.OnCrash. An error of fn whose process exited meanwhile is
// wrapped with ErrPluginExited. Call does not recover a panic in fn; the
// version it leased is still released.
func (m *Manager[T]) Call(ctx context.Context, key string, fn func(T) error) error {
	for {
		ch := m.changed.Load()
		l, ok := m.val.Acquire()
		if !ok {
			return ErrClosed
		}
		r := l.Value()
		inst, trial := r.pick(key, &m.rr)
		if inst.dead.Load() {
			l.Release()
			if err := m.waitRestart(ctx, ch, inst); err != nil {
				return err
			}
			continue
		}
		err := callLeased(l, inst.impl, fn)
		inst.v.calls.Add(1)
		if err != nil {
			inst.v.errs.Add(1)
			err = inst.classify(err)
		}
		if trial != nil {
			m.recordCanary(trial, err)
		}
		return err
	}
}

func callLeased[T any](l reload.Lease[*route[T]], impl T, fn func(T) error) error {
	defer l.Release()
	return fn(impl)
}

func (m *Manager[T]) waitRestart(ctx context.Context, ch *chan struct{}, inst *instance[T]) error {
	if m.opts.OnCrash == FailFast {
		return fmt.Errorf("%w (version %s)", ErrRestarting, inst.v.id)
	}
	select {
	case <-*ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w (version %s): %w", ErrRestarting, inst.v.id, context.Cause(ctx))
	case <-m.closed:
		return ErrClosed
	}
}

// Swap loads the binary at path and makes it the version every new call
// uses, replacing the stable version and any canary. It returns once the new
// version is serving; the replaced processes drain and exit in the
// background (Close waits for them). On any failure the serving version
// stays and the error is a *LoadError. ctx bounds staging and start. While
// another swap, reload, rollback or restart runs, Swap returns ErrBusy.
func (m *Manager[T]) Swap(ctx context.Context, path string) (Version, error) {
	if err := m.lockOp(); err != nil {
		return Version{}, err
	}
	defer m.opMu.Unlock()
	ctx, stop := m.opContext(ctx)
	defer stop()
	return m.swapLocked(ctx, path, false)
}

// Canary loads the binary at path and lets it answer
// Options.Canary.Percent % of the keys beside the stable version, until it
// is promoted or rolled back (automatically, see CanaryOptions, or with
// Promote and Rollback). A running canary is replaced. Errors as for Swap.
func (m *Manager[T]) Canary(ctx context.Context, path string) (Version, error) {
	if m.opts.Canary.Percent <= 0 {
		return Version{}, fmt.Errorf("%w: Options.Canary.Percent is 0", ErrNoCanary)
	}
	if err := m.lockOp(); err != nil {
		return Version{}, err
	}
	defer m.opMu.Unlock()
	ctx, stop := m.opContext(ctx)
	defer stop()
	return m.swapLocked(ctx, path, true)
}

// Promote makes the running canary the stable version.
func (m *Manager[T]) Promote() (Version, error) {
	if err := m.lockOp(); err != nil {
		return Version{}, err
	}
	defer m.opMu.Unlock()
	if m.route.canary == nil {
		return Version{}, ErrNoCanary
	}
	return m.promoteLocked("on demand"), nil
}

// Rollback aborts the running canary if there is one; otherwise it starts
// the version that was stable before the current one (from its staged copy,
// verified again) and swaps it in. A second Rollback rolls forward again.
func (m *Manager[T]) Rollback(ctx context.Context) (Version, error) {
	if err := m.lockOp(); err != nil {
		return Version{}, err
	}
	defer m.opMu.Unlock()
	if m.route.canary != nil {
		return m.abortCanaryLocked("rollback on demand", nil), nil
	}
	if m.prev == nil {
		return Version{}, ErrNoPrevious
	}
	ctx, stop := m.opContext(ctx)
	defer stop()
	target, from := m.prev, m.route.stable.v
	start := time.Now()
	inst, err := m.start(ctx, target)
	if err != nil {
		m.emit(Event{Kind: EventRefused, Version: target.id, Path: target.source, Err: err, Duration: time.Since(start)})
		return Version{}, err
	}
	m.setRoute(&route[T]{stable: inst})
	m.prev = from
	m.setState(target, StateServing)
	m.emit(Event{Kind: EventRolledBack, Version: target.id, Previous: from.id, PluginPID: inst.pid, Duration: time.Since(start)})
	return m.info(target), nil
}

// swapLocked stages path, starts it and swaps it in as the stable version,
// or as the canary. opMu is held.
func (m *Manager[T]) swapLocked(ctx context.Context, path string, canary bool) (Version, error) {
	start := time.Now()
	v := m.newVersion(path)
	staged, sum, err := stage(path, m.opts.StageDir, m.opts.Checksums, m.opts.hooks)
	stageTook := time.Since(start)
	if err != nil {
		return Version{}, m.refuse(v, PhaseStage, err, stageTook)
	}
	v.staged, v.sum = staged, sum
	if cur, ok := m.unchangedLocked(v); ok {
		return cur, nil
	}
	m.recordStaged(v, stageTook)
	if m.opts.hooks.afterStage != nil {
		m.opts.hooks.afterStage(path, staged)
	}
	m.emit(Event{Kind: EventStaged, Version: v.id, Path: path, Duration: stageTook})
	inst, err := m.start(ctx, v)
	if err != nil {
		var le *LoadError
		if errors.As(err, &le) {
			m.setRefused(v, le)
			m.emit(Event{Kind: EventRefused, Version: v.id, Path: path, Err: err, Duration: time.Since(start)})
		}
		return Version{}, err
	}
	select {
	case <-m.closed:
		inst.kill()
		return Version{}, m.refuse(v, PhaseSwap, ErrClosed, time.Since(start))
	default:
	}
	return m.installLocked(inst, canary, start), nil
}

// unchangedLocked reports whether v, staged, is the binary of the stable
// version or of the canary, and returns that version. A binary that is the
// stable one again ends a running canary. opMu is held.
func (m *Manager[T]) unchangedLocked(v *version) (Version, bool) {
	cur := m.route
	if cur == nil {
		return Version{}, false
	}
	if cur.canary != nil && cur.canary.v.sum == v.sum {
		m.emit(Event{Kind: EventUnchanged, Version: cur.canary.v.id})
		return m.info(cur.canary.v), true
	}
	if cur.stable.v.sum != v.sum {
		return Version{}, false
	}
	if cur.canary != nil {
		return m.abortCanaryLocked("the binary is the stable version again", nil), true
	}
	m.emit(Event{Kind: EventUnchanged, Version: cur.stable.v.id})
	return m.info(cur.stable.v), true
}

// installLocked routes calls to inst, a started instance of a new version:
// as the canary beside the stable version, or as the stable version.
// start is when its load began. opMu is held.
func (m *Manager[T]) installLocked(inst *instance[T], canary bool, start time.Time) Version {
	v, cur := inst.v, m.route
	if canary && cur != nil {
		m.setRoute(&route[T]{stable: cur.stable, canary: inst,
			share: m.opts.Canary.share(), trial: m.newTrial()})
		m.setState(v, StateCanary)
		m.emit(Event{Kind: EventCanaryStarted, Version: v.id, Previous: cur.stable.v.id, PluginPID: inst.pid,
			Duration: time.Since(start), Percent: m.opts.Canary.Percent})
		return m.info(v)
	}
	m.setRoute(&route[T]{stable: inst})
	prevID := ""
	if cur != nil {
		m.prev = cur.stable.v
		prevID = cur.stable.v.id
	}
	m.setState(v, StateServing)
	m.emit(Event{Kind: EventSwapped, Version: v.id, Previous: prevID, PluginPID: inst.pid, Duration: time.Since(start)})
	return m.info(v)
}

// setRoute makes r current, wakes calls waiting for a restart, and retires
// every instance of the old route r does not keep. opMu is held.
func (m *Manager[T]) setRoute(r *route[T]) {
	r.ref()
	if _, err := m.val.Swap(r, reload.Info{ID: r.id(), Source: r.stable.v.source}); err != nil {
		// Only after Close, which holds opMu while it takes the route down;
		// so this cannot happen, but the instances must not leak if it does.
		r.release()
		for _, inst := range []*instance[T]{r.stable, r.canary} {
			if inst != nil {
				m.retire(inst)
			}
		}
		return
	}
	old := m.route
	m.route = r
	if old != nil {
		if old.trial != nil && old.trial != r.trial {
			old.trial.stop()
		}
		for _, inst := range []*instance[T]{old.stable, old.canary} {
			if inst != nil && inst != r.stable && inst != r.canary {
				m.retire(inst)
			}
		}
	}
	ch := make(chan struct{})
	close(*m.changed.Swap(&ch))
}

// retire kills inst once no call uses it any more, or at the drain deadline.
func (m *Manager[T]) retire(inst *instance[T]) {
	if !inst.retiring.CompareAndSwap(false, true) {
		return
	}
	m.setState(inst.v, StateRetired)
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		start := time.Now()
		forced := false
		if inst.refs.Load() > 0 {
			t := time.NewTimer(m.opts.DrainTimeout)
			select {
			case <-inst.unref:
			case <-t.C:
				forced = true
			}
			t.Stop()
		}
		inst.kill()
		m.emit(Event{Kind: EventRetired, Version: inst.v.id, PluginPID: inst.pid, Duration: time.Since(start), Forced: forced})
	}()
}

// Close ends every Watch (which then returns ErrClosed), stops routing
// calls (Call returns ErrClosed), lets the calls in flight finish (up to
// Options.DrainTimeout), kills every plugin process, waits for them to exit,
// and removes the Manager's private directory (and with it the staged
// binaries unless Options.StageDir is set). It returns what it could not
// do: an error if that directory could not be removed. Close is idempotent:
// later calls return the same result.
func (m *Manager[T]) Close() error {
	m.once.Do(func() {
		m.watchMu.Lock()
		m.closing = true
		m.watchMu.Unlock()
		close(m.closed)
		m.cancel()
		m.watchers.Wait()
		m.loopWG.Wait()
		m.opMu.Lock()
		r := m.route
		m.route = nil
		m.val.Close()
		if r != nil {
			if r.trial != nil {
				r.trial.stop()
			}
			m.retire(r.stable)
			if r.canary != nil {
				m.retire(r.canary)
			}
		}
		close(*m.changed.Load())
		m.opMu.Unlock()
		m.wg.Wait()
		if m.sp != nil {
			m.sp.stop()
		}
		if m.priv != nil {
			m.closeErr = m.priv.remove()
		}
	})
	return m.closeErr
}
