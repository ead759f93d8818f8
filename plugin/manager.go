package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	ossignal "os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoff-go/handoff/reload"
	goplugin "github.com/hashicorp/go-plugin"
)

// Defaults for Options.
const (
	DefaultStartTimeout      = 30 * time.Second
	DefaultDrainTimeout      = 30 * time.Second
	DefaultRestartBackoff    = 100 * time.Millisecond
	DefaultMaxRestartBackoff = 30 * time.Second
	DefaultHistory           = 16
)

// CrashMode says what a Call does while the plugin process that would answer
// it is being restarted after a crash.
type CrashMode int

const (
	// WaitForRestart makes the call wait for the restarted process, bounded
	// by the call's context. The default.
	WaitForRestart CrashMode = iota
	// FailFast makes the call return ErrRestarting at once.
	FailFast
)

// Options configures a Manager. Handshake, Plugins and Path are required;
// every other field has a default.
type Options[T any] struct {
	// Handshake and Plugins are what goplugin.ClientConfig takes: the
	// go-plugin handshake and the plugin map.
	Handshake goplugin.HandshakeConfig
	Plugins   goplugin.PluginSet

	// Name is the key in Plugins to dispense. Default: the only key.
	Name string

	// Path is the plugin binary New starts and Reload (and the watcher, and
	// the signals) load again.
	Path string

	// Args are passed to the plugin binary.
	Args []string

	// Protocols are the go-plugin protocols accepted. Default: gRPC and net/rpc.
	Protocols []goplugin.Protocol

	// Checksums, when not empty, is the allow-list of sha256 sums (32 bytes
	// each) a binary must match to be started.
	Checksums [][]byte

	// StageDir is where binaries are copied, each under its sha256, before
	// they are verified and started. Default: a private directory New
	// creates and Close removes. A directory given here is created with mode
	// 0700 if needed and kept.
	StageDir string

	// Health checks a started plugin before it takes calls, after every
	// start and restart. Default: go-plugin's Ping (the gRPC health service
	// or the net/rpc control ping). ctx carries the start deadline.
	Health func(ctx context.Context, p T) error

	// StartTimeout bounds exec, handshake, dispense and health check of one
	// start. Default DefaultStartTimeout.
	StartTimeout time.Duration

	// DrainTimeout is how long a replaced version's in-flight calls may run
	// before its process is killed anyway. Default DefaultDrainTimeout.
	DrainTimeout time.Duration

	// RestartBackoff and MaxRestartBackoff bound the wait before restarting a
	// crashed plugin: none for the first crash, then RestartBackoff, doubled
	// after each further crash or failed restart up to MaxRestartBackoff. A
	// process that served for MaxRestartBackoff resets it.
	// Defaults DefaultRestartBackoff and DefaultMaxRestartBackoff.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration

	// OnCrash is what calls do while a crashed plugin restarts.
	// Default WaitForRestart.
	OnCrash CrashMode

	// Watch makes the manager reload Path when the file changes (fsnotify,
	// through reload.Watcher, debounced, safe with rename-saves and symlink
	// swaps).
	Watch bool

	// Signals make the manager reload Path when the process receives one of
	// them (typically syscall.SIGUSR2). Default: none.
	Signals []os.Signal

	// Canary, when Canary.Percent > 0, makes Reload (and the watcher and the
	// signals) start a new version as a canary rather than swap it in.
	Canary CanaryOptions

	// History is the number of versions Versions remembers, and whose staged
	// binaries are kept for Rollback. Default DefaultHistory.
	History int

	// Logger receives the manager's records, go-plugin's, and the plugin's
	// stderr. Default: slog.Default().
	Logger *slog.Logger

	// OnEvent is called synchronously for every event; it must not block
	// and must not call the Manager's swap methods (they would see ErrBusy).
	OnEvent func(Event)

	hooks stageHooks // test seams
}

// Manager runs one go-plugin plugin and swaps versions of it without
// failing calls: a new version is staged, started, handshaken, dispensed and
// health-checked before it takes any call; calls already running on the old
// version finish there; the old process is killed once they have (or at
// Options.DrainTimeout). A crashed plugin is restarted with backoff. A new
// version can first take a share of the calls as a canary.
//
// All methods are safe for concurrent use. Call takes no lock.
type Manager[T any] struct {
	opts    Options[T]
	log     *slog.Logger
	val     *reload.Value[*route[T]]
	sp      *spawner
	watcher *reload.Watcher[*route[T]]

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup // retirements and exit watchers
	loopWG sync.WaitGroup // the event loop and the watcher

	changed atomic.Pointer[chan struct{}] // closed at every route change
	rr      atomic.Uint64                 // canary choice for calls without a key

	crashCh   chan *instance[T]
	verdictCh chan struct{}
	sigCh     chan os.Signal

	// opMu serialises the changes of route; route is the current one.
	opMu    sync.Mutex
	route   *route[T]
	prev    *version // the stable version before the current one
	backoff time.Duration

	mu       sync.Mutex // guards the version records and history
	history  []*version
	seq      int
	ownStage bool
}

// New starts the plugin at opts.Path and returns once it is serving, or
// returns the reason it could not start. ctx bounds the first start. The
// Manager must be closed with Close.
func New[T any](ctx context.Context, opts Options[T]) (*Manager[T], error) {
	if opts.Path == "" {
		return nil, errors.New("plugin: Options.Path is empty")
	}
	if len(opts.Plugins) == 0 {
		return nil, errors.New("plugin: Options.Plugins is empty")
	}
	if opts.Name == "" {
		if len(opts.Plugins) != 1 {
			return nil, errors.New("plugin: Options.Name is empty and Plugins has several entries")
		}
		for k := range opts.Plugins {
			opts.Name = k
		}
	}
	if _, ok := opts.Plugins[opts.Name]; !ok {
		return nil, fmt.Errorf("plugin: Options.Plugins has no %q", opts.Name)
	}
	if opts.Protocols == nil {
		opts.Protocols = []goplugin.Protocol{goplugin.ProtocolGRPC, goplugin.ProtocolNetRPC}
	}
	for _, c := range opts.Checksums {
		if len(c) != sha256.Size {
			return nil, fmt.Errorf("plugin: Options.Checksums holds a %d-byte sum; sha256 sums have %d", len(c), sha256.Size)
		}
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.RestartBackoff <= 0 {
		opts.RestartBackoff = DefaultRestartBackoff
	}
	if opts.MaxRestartBackoff <= 0 {
		opts.MaxRestartBackoff = DefaultMaxRestartBackoff
	}
	if opts.History <= 0 {
		opts.History = DefaultHistory
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Canary = opts.Canary.withDefaults()
	abs, err := filepath.Abs(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("plugin: %w", err)
	}
	opts.Path = abs

	m := &Manager[T]{
		opts:      opts,
		log:       opts.Logger.With("plugin", opts.Name),
		closed:    make(chan struct{}),
		crashCh:   make(chan *instance[T], 4),
		verdictCh: make(chan struct{}, 1),
	}
	if opts.StageDir == "" {
		dir, err := os.MkdirTemp("", "handoff-plugin-")
		if err != nil {
			return nil, fmt.Errorf("plugin: staging directory: %w", err)
		}
		m.opts.StageDir, m.ownStage = dir, true
	} else if err := os.MkdirAll(opts.StageDir, 0o700); err != nil {
		return nil, fmt.Errorf("plugin: staging directory: %w", err)
	}
	ch := make(chan struct{})
	m.changed.Store(&ch)
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.val = reload.New(reload.Options[*route[T]]{
		// Only setRoute swaps; the watcher's loads report "unchanged" with
		// no value (see watchLoad). Refuse a nil route all the same.
		Validate: func(r *route[T]) error {
			if r == nil {
				return errors.New("plugin: no route")
			}
			return nil
		},
		Release: func(r *route[T]) { r.release() },
		History: 1,
	})
	m.sp = newSpawner()

	m.opMu.Lock()
	_, err = m.swapLocked(ctx, opts.Path, false)
	m.opMu.Unlock()
	if err != nil {
		m.Close()
		return nil, err
	}

	if opts.Watch {
		w, err := reload.NewWatcher(m.val, opts.Path, m.watchLoad, reload.WatcherOptions{Logger: m.log})
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("plugin: watch: %w", err)
		}
		m.watcher = w
		m.loopWG.Add(1)
		go func() {
			defer m.loopWG.Done()
			_ = w.Run(m.ctx) // returns at Close
		}()
	}
	if len(opts.Signals) > 0 {
		m.sigCh = make(chan os.Signal, 1)
		ossignal.Notify(m.sigCh, opts.Signals...)
	}
	m.loopWG.Add(1)
	go m.loop()
	return m, nil
}

// watchLoad is the watcher's Loader. A plugin swap has steps a single
// reload.Value.Load cannot express (a canary keeps the stable version in
// the same route; an unchanged binary must not start a process), so the
// watcher is used as the debounced, never-overlapping trigger: the load
// does the swap itself and then reports the current route's id with no
// value, which Value.Load takes as "unchanged".
func (m *Manager[T]) watchLoad(ctx context.Context) (*route[T], reload.Info, error) {
	ctx, stop := m.opContext(ctx)
	defer stop()
	m.opMu.Lock()
	_, err := m.reloadLocked(ctx)
	id := ""
	if m.route != nil {
		id = m.route.id()
	}
	m.opMu.Unlock()
	return nil, reload.Info{ID: id, Source: m.opts.Path}, err
}

// loop owns crash restarts, canary verdicts and signals.
func (m *Manager[T]) loop() {
	defer m.loopWG.Done()
	var (
		pending *instance[T] // crashed stable instance waiting for a restart
		retry   *time.Timer
		retryC  <-chan time.Time
	)
	arm := func(d time.Duration) {
		if retry == nil {
			retry = time.NewTimer(d)
		} else {
			retry.Reset(d)
		}
		retryC = retry.C
	}
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		select {
		case <-m.closed:
			return
		case inst := <-m.crashCh:
			if m.handleCrash(inst) {
				pending = inst
				arm(m.nextBackoff())
			}
		case <-retryC:
			retryC = nil
			if pending != nil && !m.restart(pending) {
				arm(m.nextBackoff())
			} else {
				pending = nil
			}
		case <-m.verdictCh:
			m.judgeCanary()
		case <-m.sigCh:
			ctx, stop := m.opContext(context.Background())
			m.opMu.Lock()
			_, _ = m.reloadLocked(ctx) // reported as an event
			m.opMu.Unlock()
			stop()
		}
	}
}

// nextBackoff returns the wait before the next restart attempt and doubles
// the one after. Only the loop goroutine uses m.backoff.
func (m *Manager[T]) nextBackoff() time.Duration {
	d := m.backoff
	m.backoff = min(max(m.opts.RestartBackoff, 2*d), m.opts.MaxRestartBackoff)
	return d
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
		if err != nil {
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
// stays and the error is a *LoadError. ctx bounds staging and start.
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
// Promote and Rollback). A running canary is replaced.
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

// Reload loads Options.Path again, as the watcher and the signals do: as a
// canary when Options.Canary.Percent > 0, else as a swap. A binary with the
// sha256 of the stable version (or of the running canary) changes nothing
// and returns that version.
func (m *Manager[T]) Reload(ctx context.Context) (Version, error) {
	if err := m.lockOp(); err != nil {
		return Version{}, err
	}
	defer m.opMu.Unlock()
	ctx, stop := m.opContext(ctx)
	defer stop()
	return m.reloadLocked(ctx)
}

func (m *Manager[T]) reloadLocked(ctx context.Context) (Version, error) {
	if m.route == nil {
		return Version{}, ErrClosed
	}
	return m.swapLocked(ctx, m.opts.Path, m.opts.Canary.Percent > 0)
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
		m.emit(Event{Kind: EventRefused, Version: target.id, Err: err})
		return Version{}, err
	}
	m.setRoute(&route[T]{stable: inst})
	m.prev = from
	m.setState(target, StateServing)
	m.emit(Event{Kind: EventRolledBack, Version: target.id, Previous: from.id, PID: inst.pid, Took: time.Since(start)})
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
		return Version{}, m.refuse(v, PhaseStage, err)
	}
	v.staged, v.sum = staged, sum
	m.mu.Lock()
	v.info.SHA256 = hex.EncodeToString(sum[:])
	v.info.Staged = staged
	m.mu.Unlock()
	if cur := m.route; cur != nil {
		if cur.canary != nil && cur.canary.v.sum == sum {
			m.emit(Event{Kind: EventUnchanged, Version: cur.canary.v.id})
			return m.info(cur.canary.v), nil
		}
		if cur.stable.v.sum == sum {
			if cur.canary != nil { // the binary went back to the stable one: end the canary
				return m.abortCanaryLocked("the binary is the stable version again", nil), nil
			}
			m.emit(Event{Kind: EventUnchanged, Version: cur.stable.v.id})
			return m.info(cur.stable.v), nil
		}
	}
	m.recordStaged(v, stageTook)
	if m.opts.hooks.afterStage != nil {
		m.opts.hooks.afterStage(path, staged)
	}
	m.emit(Event{Kind: EventStaged, Version: v.id, Took: stageTook})
	inst, err := m.start(ctx, v)
	if err != nil {
		var le *LoadError
		if errors.As(err, &le) {
			m.setRefused(v, le)
			m.emit(Event{Kind: EventRefused, Version: v.id, Err: err})
		}
		return Version{}, err
	}
	select {
	case <-m.closed:
		inst.kill()
		return Version{}, m.refuse(v, PhaseSwap, ErrClosed)
	default:
	}
	cur := m.route
	if canary && cur != nil {
		m.setRoute(&route[T]{stable: cur.stable, canary: inst,
			share: m.opts.Canary.share(), trial: m.newTrial()})
		m.setState(v, StateCanary)
		m.emit(Event{Kind: EventCanaryStarted, Version: v.id, Previous: cur.stable.v.id, PID: inst.pid,
			Took: time.Since(start), Percent: m.opts.Canary.Percent})
		return m.info(v), nil
	}
	m.setRoute(&route[T]{stable: inst})
	prevID := ""
	if cur != nil {
		m.prev = cur.stable.v
		prevID = cur.stable.v.id
	}
	m.setState(v, StateServing)
	m.emit(Event{Kind: EventSwapped, Version: v.id, Previous: prevID, PID: inst.pid, Took: time.Since(start)})
	return m.info(v), nil
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
		ev := Event{Kind: EventRetired, Version: inst.v.id, PID: inst.pid, Took: time.Since(start), Forced: forced}
		m.emit(ev)
	}()
}

// Close stops the triggers, stops routing calls (Call returns ErrClosed),
// lets the calls in flight finish (up to Options.DrainTimeout), kills every
// plugin process, waits for them to exit, and removes the staging directory
// New created. Close is idempotent; it returns nil.
func (m *Manager[T]) Close() error {
	m.once.Do(func() {
		close(m.closed)
		m.cancel()
		if m.sigCh != nil {
			ossignal.Stop(m.sigCh)
		}
		if m.watcher != nil {
			_ = m.watcher.Close()
		}
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
		m.sp.stop()
		if m.ownStage {
			_ = os.RemoveAll(m.opts.StageDir)
		}
	})
	return nil
}

// handleCrash reacts to the exit of a process nobody asked to exit. It
// reports whether inst is the stable instance and must be restarted.
func (m *Manager[T]) handleCrash(inst *instance[T]) bool {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	r := m.route
	if r == nil || inst.retiring.Load() {
		return false
	}
	m.emit(Event{Kind: EventCrashed, Version: inst.v.id, PID: inst.pid, Err: inst.run.exitErr})
	if inst == r.canary {
		m.abortCanaryLocked("the canary crashed", inst.run.exitErr)
		return false
	}
	if inst != r.stable {
		return false
	}
	if time.Since(inst.since) >= m.opts.MaxRestartBackoff {
		m.backoff = 0
	}
	return true
}

// restart starts a new process for the crashed stable instance inst. It
// reports whether it is done: restarted, or inst is no longer the stable
// instance (a swap or rollback replaced it meanwhile).
func (m *Manager[T]) restart(inst *instance[T]) bool {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	r := m.route
	if r == nil || r.stable != inst {
		return true
	}
	ctx, stop := m.opContext(context.Background())
	defer stop()
	start := time.Now()
	n, err := m.start(ctx, inst.v)
	if err != nil {
		m.emit(Event{Kind: EventRestartFailed, Version: inst.v.id, Err: err})
		return false
	}
	m.setRoute(&route[T]{stable: n, canary: r.canary, share: r.share, trial: r.trial})
	m.mu.Lock()
	inst.v.info.Restarts++
	m.mu.Unlock()
	m.emit(Event{Kind: EventRestarted, Version: inst.v.id, PID: n.pid, Took: time.Since(start)})
	return true
}
