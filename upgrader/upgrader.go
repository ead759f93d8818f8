package upgrader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudflare/tableflip"

	"github.com/handoff-go/handoff/internal/control"
	"github.com/handoff-go/handoff/listener"
)

// Defaults for Options.
const (
	// DefaultUpgradeTimeout bounds a whole upgrade, from spawn to commit,
	// probation included.
	DefaultUpgradeTimeout = time.Minute
	// DefaultDrainTimeout bounds Drain when its context has no deadline,
	// and the drain of a new generation that is rolled back.
	DefaultDrainTimeout = 30 * time.Second
	// DefaultMaxStateSize bounds the state blob handed to the next
	// generation.
	DefaultMaxStateSize = 1 << 20
	// DefaultHealthInterval is the period of health checks during
	// probation.
	DefaultHealthInterval = 100 * time.Millisecond
)

// finishTimeout bounds how long a final stop waits for the server to take
// the connections queued in the kernel before it closes a listener.
const finishTimeout = time.Second

// handshakeTimeout bounds the control hand-shake a new generation makes in New.
const handshakeTimeout = 10 * time.Second

// Options configure an Upgrader. The zero value means all defaults.
type Options struct {
	// UpgradeTimeout bounds an upgrade from the spawn of the new process to
	// its commit, probation included. A new generation that has not
	// committed by then is rolled back. Default DefaultUpgradeTimeout. It
	// must be longer than Probation.
	UpgradeTimeout time.Duration

	// Probation is how long a new generation serves, health-checked, while
	// the previous one is paused (not closed) and can still take over
	// again. 0 (the default) commits as soon as the new generation is
	// ready. The previous generation's value governs: a new binary cannot
	// shorten the window it is judged by.
	Probation time.Duration

	// HealthCheck is run by Ready before the new generation accepts
	// connections, and every HealthInterval during probation. A non-nil
	// error fails the upgrade. Default: always healthy. Listeners do not
	// accept until the first check passed, so the check must not call the
	// process's own listeners.
	HealthCheck func(ctx context.Context) error

	// HealthInterval is the period of health checks during probation.
	// Default DefaultHealthInterval.
	HealthInterval time.Duration

	// DrainTimeout bounds Drain when its context has no deadline, and the
	// drain of a new generation that is rolled back while it serves.
	// Default DefaultDrainTimeout.
	DrainTimeout time.Duration

	// IdleGrace is passed to every tracked listener: while draining, an
	// idle keep-alive connection is closed once it has been idle this long.
	// Default listener.DefaultIdleGrace.
	IdleGrace time.Duration

	// PIDFile, if set, receives this process's pid, written atomically
	// (temporary file and rename) by the generation that is in charge: a
	// first generation when it is ready, a new one when it commits, which
	// is before the previous one exits. A rolled-back upgrade leaves (or
	// puts back) the previous generation's pid.
	PIDFile string

	// SaveState, if set, is called by Upgrade before the new process is
	// started; the bytes it returns are read by the new generation with
	// State. At most MaxStateSize bytes, or Upgrade fails with
	// ErrStateTooLarge and starts nothing.
	SaveState func() ([]byte, error)

	// MaxStateSize bounds the state blob. Default DefaultMaxStateSize.
	MaxStateSize int

	// ListenConfig is used for sockets that are not inherited. Default: the
	// zero net.ListenConfig.
	ListenConfig *net.ListenConfig

	// Logger receives a record for every event. Default: discard.
	Logger *slog.Logger

	// OnEvent, if set, is called synchronously for every event; it must
	// not block.
	OnEvent func(Event)
}

func (o Options) withDefaults() Options {
	if o.UpgradeTimeout <= 0 {
		o.UpgradeTimeout = DefaultUpgradeTimeout
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = DefaultHealthInterval
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.MaxStateSize <= 0 {
		o.MaxStateSize = DefaultMaxStateSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Upgrader hands a process's sockets to the next generation of its binary.
//
// All methods are safe for concurrent use. One Upgrader exists per process:
// see New.
type Upgrader struct {
	opts    Options
	log     *slog.Logger
	tf      *tableflip.Upgrader
	created time.Time

	gen       int
	state     []byte
	parent    *control.Conn // nil on a first start
	probation time.Duration // held by Ready; set by the parent
	interval  time.Duration

	mu        sync.Mutex
	listeners []*listener.Listener
	ready     bool // listeners accept
	committed bool // this generation is in charge
	upgraded  bool // a successor took over
	pidWrite  bool // this process wrote the PID file

	busy      atomic.Bool
	readyOnce sync.Once
	readyErr  error
	stopOnce  sync.Once
	stopC     chan struct{}
	exitOnce  sync.Once
	exitC     chan struct{}
	drainOnce sync.Once
	drainRes  drainResult
	wg        sync.WaitGroup

	sd systemd // sd_notify, watchdog and socket activation state (systemd.go)
}

type drainResult struct {
	stats listener.DrainStats
	err   error
}

var (
	processMu       sync.Mutex
	processUpgrader *Upgrader
)

// New returns the process's Upgrader. On a first start it has no parent and
// generation 1; in a process started by Upgrade it adopts the sockets and the
// state of its parent, which waits for it to call Ready.
//
// Only one Upgrader can exist per process (the hand-over is a property of
// the process); a second call returns an error. A process that looks like an
// upgrade but whose inheritance is unusable gets an error wrapping
// ErrMalformedEnvironment, never a panic.
func New(opts Options) (*Upgrader, error) {
	processMu.Lock()
	defer processMu.Unlock()
	if processUpgrader != nil {
		return nil, errors.New("upgrader: only one Upgrader per process")
	}
	u, err := newUpgrader(opts)
	if err != nil {
		return nil, err
	}
	processUpgrader = u
	return u, nil
}

func newUpgrader(opts Options) (*Upgrader, error) {
	opts = opts.withDefaults()
	if opts.Probation >= opts.UpgradeTimeout {
		return nil, fmt.Errorf("upgrader: Probation (%s) must be shorter than UpgradeTimeout (%s)", opts.Probation, opts.UpgradeTimeout)
	}
	if err := checkInherited(); err != nil {
		return nil, err
	}
	tf, err := tableflip.New(tableflip.Options{
		// Our own deadline comes first and rolls back gracefully; this
		// one only catches a new process that never reaches New.
		UpgradeTimeout: opts.UpgradeTimeout + opts.DrainTimeout + time.Second,
		ListenConfig:   opts.ListenConfig,
	})
	if err != nil {
		if errors.Is(err, tableflip.ErrNotSupported) {
			return nil, ErrNotSupported
		}
		if os.Getenv(sentinelEnv) != "" {
			return nil, fmt.Errorf("%w: %w", ErrMalformedEnvironment, err)
		}
		return nil, fmt.Errorf("upgrader: %w", err)
	}
	u := &Upgrader{
		opts:     opts,
		log:      opts.Logger,
		tf:       tf,
		created:  time.Now(),
		gen:      1,
		stopC:    make(chan struct{}),
		exitC:    make(chan struct{}),
		interval: opts.HealthInterval,
	}
	if tf.HasParent() {
		if err := u.handshake(); err != nil {
			tf.Stop()
			return nil, err
		}
	}
	if err := u.sdInit(); err != nil {
		tf.Stop()
		return nil, err
	}
	return u, nil
}

// handshake introduces a new generation to its parent and reads its number,
// probation and state.
func (u *Upgrader) handshake() error {
	c, err := control.Dial(handshakeTimeout)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedEnvironment, err)
	}
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := c.Send(control.Message{Type: control.TypeHello, PID: os.Getpid()}); err != nil {
		c.Close()
		return fmt.Errorf("%w: %w", ErrMalformedEnvironment, err)
	}
	m, err := c.Receive()
	if err != nil || m.Type != control.TypeWelcome {
		c.Close()
		if err == nil {
			err = fmt.Errorf("expected %s, got %q", control.TypeWelcome, m.Type)
		}
		return fmt.Errorf("%w: control hand-shake: %w", ErrMalformedEnvironment, err)
	}
	_ = c.SetDeadline(time.Time{})
	u.parent = c
	u.gen = m.Generation
	u.state = m.State
	u.probation = m.Probation
	if m.Interval > 0 {
		u.interval = m.Interval
	}
	return nil
}

func (u *Upgrader) closeExit() { u.exitOnce.Do(func() { close(u.exitC) }) }

// Generation is this process's generation: 1 on a first start, its parent's
// plus one after an upgrade.
func (u *Upgrader) Generation() int { return u.gen }

// HasParent reports whether this process was started by Upgrade.
func (u *Upgrader) HasParent() bool { return u.tf.HasParent() }

// State returns the blob the previous generation handed over (see
// Options.SaveState), or nil on a first start.
func (u *Upgrader) State() []byte { return u.state }

// Exit returns a channel that is closed when this generation should drain
// and exit: its successor committed, Stop was called, or (in a new
// generation) Ready failed or the parent rolled it back.
func (u *Upgrader) Exit() <-chan struct{} { return u.exitC }

// Listen returns a tracked listener for network ("tcp", "tcp4", "tcp6",
// "unix" or "unixpacket") and addr. A socket inherited from the previous
// generation under the same network and address (port 0 included) is
// adopted, never bound again; otherwise a new one is created and will be
// handed to the next generation. The listener does not accept until Ready
// has run the health check.
func (u *Upgrader) Listen(network, addr string) (*listener.Listener, error) {
	switch network {
	case "tcp", "tcp4", "tcp6", "unix", "unixpacket":
	default:
		return nil, fmt.Errorf("upgrader: Listen: unsupported network %q", network)
	}
	var inner net.Listener
	var err error
	if ln, ok := u.sdActivated(network, addr); ok {
		inner = ln
	} else {
		inner, err = u.tf.Listen(network, addr)
	}
	if err != nil {
		return nil, fmt.Errorf("upgrader: listen %s %s: %w", network, addr, err)
	}
	ln := listener.Wrap(inner, listener.Options{IdleGrace: u.opts.IdleGrace, Logger: u.log})
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.ready {
		ln.Pause()
	}
	u.listeners = append(u.listeners, ln)
	return ln, nil
}

// ListenPacket returns a packet socket for network ("udp", "udp4", "udp6",
// "unixgram") and addr, inherited from the previous generation or new. Both
// generations hold it during an upgrade; this one should stop reading once
// Exit is closed.
func (u *Upgrader) ListenPacket(network, addr string) (net.PacketConn, error) {
	switch network {
	case "udp", "udp4", "udp6", "unixgram":
	default:
		return nil, fmt.Errorf("upgrader: ListenPacket: unsupported network %q", network)
	}
	pc, err := u.tf.ListenPacket(network, addr)
	if err != nil {
		return nil, fmt.Errorf("upgrader: listen packet %s %s: %w", network, addr, err)
	}
	return pc, nil
}

// File returns the file inherited under name, or, on a first start, the one
// open returns, which is then handed to later generations. Use it for any fd
// other than a socket: a memfd, a lock file, a pipe.
func (u *Upgrader) File(name string, open func() (*os.File, error)) (*os.File, error) {
	f, err := u.tf.File(name)
	if err != nil {
		return nil, fmt.Errorf("upgrader: inherited file %q: %w", name, err)
	}
	if f != nil {
		return f, nil
	}
	if open == nil {
		return nil, nil
	}
	f, err = open()
	if err != nil {
		return nil, err
	}
	if err := u.tf.AddFile(name, f); err != nil {
		return nil, fmt.Errorf("upgrader: register file %q: %w", name, err)
	}
	return f, nil
}

// Listeners returns the tracked listeners created by Listen.
func (u *Upgrader) Listeners() []*listener.Listener {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*listener.Listener(nil), u.listeners...)
}

func (u *Upgrader) setPaused(paused bool) {
	for _, ln := range u.Listeners() {
		if paused {
			ln.Pause()
		} else {
			ln.Resume()
		}
	}
}

// Ready runs the health check, starts accepting on every listener and, in a
// new generation, holds the probation window, then commits: it writes the PID
// file and tells the previous generation to drain. It blocks until then.
//
// In a new generation a failed health check, a rollback by the parent, or ctx
// ending returns an error and closes Exit: the process should drain and
// exit. Only the first call does the work; later calls return its result.
func (u *Upgrader) Ready(ctx context.Context) error {
	u.readyOnce.Do(func() {
		u.readyErr = u.doReady(ctx)
		if u.readyErr != nil {
			u.closeExit()
		}
	})
	return u.readyErr
}

func (u *Upgrader) doReady(ctx context.Context) error {
	start := time.Now()
	if err := u.check(ctx); err != nil {
		if u.parent != nil {
			// The parent wraps the reason in its own ErrUnhealthy.
			_ = u.parent.Send(control.Message{Type: control.TypeUnhealthy, Reason: "health check failed: " + err.Error()})
			u.parent.Close()
		}
		return fmt.Errorf("%w: %w", ErrUnhealthy, err)
	}
	u.mu.Lock()
	u.ready = true
	u.mu.Unlock()
	u.setPaused(false)
	u.emit(Event{Kind: EventReady, Generation: u.gen, PID: os.Getpid(), Duration: time.Since(u.created)})
	if u.parent == nil {
		return u.commit(start)
	}
	return u.probate(ctx, start)
}

func (u *Upgrader) check(ctx context.Context) error {
	if u.opts.HealthCheck == nil {
		return nil
	}
	return u.opts.HealthCheck(ctx)
}

// probate runs in a new generation: it tells the parent it accepts, holds
// the probation window with periodic health checks, and commits when the
// parent agrees.
func (u *Upgrader) probate(ctx context.Context, start time.Time) error {
	p := u.parent
	defer p.Close()
	msgs := make(chan control.Message, 4)
	readErr := make(chan error, 1)
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			m, err := p.Receive()
			if err != nil {
				readErr <- err
				return
			}
			msgs <- m
			if m.Type == control.TypeCommit || m.Type == control.TypeRollback {
				return
			}
		}
	}()
	rolledBack := func(reason string) error {
		u.setPaused(true)
		return fmt.Errorf("%w: %s", ErrRolledBack, reason)
	}
	// parentGone handles the parent vanishing mid-upgrade: nobody else
	// serves, so this generation takes charge.
	parentGone := func(err error) error {
		u.log.Warn("handoff: previous generation went away during the upgrade; taking charge", "error", err)
		return u.commit(start)
	}

	if err := p.Send(control.Message{Type: control.TypeAccepting}); err != nil {
		return parentGone(err)
	}
	end := time.NewTimer(u.probation)
	defer end.Stop()
	tick := time.NewTicker(u.interval)
	defer tick.Stop()
	inProbation := true
	for {
		select {
		case <-ctx.Done():
			u.setPaused(true)
			_ = p.Send(control.Message{Type: control.TypeUnhealthy, Reason: "new generation's Ready context ended: " + context.Cause(ctx).Error()})
			return fmt.Errorf("upgrader: Ready: %w", context.Cause(ctx))
		case err := <-readErr:
			return parentGone(err)
		case m := <-msgs:
			switch m.Type {
			case control.TypeRollback:
				return rolledBack(m.Reason)
			case control.TypeCommit:
				return u.commit(start)
			}
		case <-tick.C:
			if !inProbation {
				continue
			}
			if err := u.check(ctx); err != nil {
				reason := fmt.Sprintf("health check failed during probation: %v", err)
				if serr := p.Send(control.Message{Type: control.TypeUnhealthy, Reason: reason}); serr != nil {
					return parentGone(serr)
				}
				inProbation = false // wait for the parent's rollback
			}
		case <-end.C:
			if !inProbation {
				continue
			}
			if err := u.check(ctx); err != nil {
				reason := fmt.Sprintf("health check failed at the end of probation: %v", err)
				if serr := p.Send(control.Message{Type: control.TypeUnhealthy, Reason: reason}); serr != nil {
					return parentGone(serr)
				}
				inProbation = false
				continue
			}
			inProbation = false
			if err := p.Send(control.Message{Type: control.TypeProbationPassed}); err != nil {
				return parentGone(err)
			}
		}
	}
}

// commit makes this generation the one in charge: PID file, then tableflip's
// readiness, which lets the parent go.
func (u *Upgrader) commit(start time.Time) error {
	if err := u.writePIDFile(); err != nil {
		return err
	}
	if err := u.tf.Ready(); err != nil && u.parent == nil {
		return fmt.Errorf("upgrader: %w", err)
	}
	u.mu.Lock()
	u.committed = true
	u.mu.Unlock()
	if u.parent == nil {
		u.sdReady()
	}
	u.emit(Event{Kind: EventCommitted, Generation: u.gen, PID: os.Getpid(), Duration: time.Since(start)})
	if u.parent != nil {
		u.wg.Add(1)
		go u.watchParent()
	}
	return nil
}

// watchParent reports when the previous generation has exited.
func (u *Upgrader) watchParent() {
	defer u.wg.Done()
	committed := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-u.stopC:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := u.tf.WaitForParent(ctx); err != nil && ctx.Err() != nil {
		return
	}
	u.sdBecameMain()
	u.emit(Event{Kind: EventParentExited, Generation: u.gen, PID: os.Getpid(), Duration: time.Since(committed)})
}

func (u *Upgrader) writePIDFile() error {
	if u.opts.PIDFile == "" {
		return nil
	}
	if err := writePIDFile(u.opts.PIDFile, os.Getpid()); err != nil {
		return fmt.Errorf("upgrader: write PID file: %w", err)
	}
	u.mu.Lock()
	u.pidWrite = true
	u.mu.Unlock()
	return nil
}

// Stop ends this generation without an upgrade: a running upgrade is
// interrupted and rolled back, no new one starts, and Exit is closed. The
// caller then drains (Drain) and exits. When this generation is the one in
// charge, unix socket files are removed, and the PID file if it still holds
// this pid; a new generation that never committed leaves them to the
// generation in charge. Stop is idempotent and does not block on the drain.
func (u *Upgrader) Stop() {
	u.stopOnce.Do(func() {
		close(u.stopC)
		u.mu.Lock()
		final, wrote := u.finalLocked(), u.pidWrite
		u.mu.Unlock()
		if final {
			u.emit(Event{Kind: EventStopping, Generation: u.gen, PID: os.Getpid()})
			u.sdStopping()
			u.tf.Stop()
			u.removeSocketFiles()
			if wrote {
				removePIDFile(u.opts.PIDFile, os.Getpid())
			}
		}
		u.closeExit()
	})
}

// finalLocked reports whether stopping this generation stops the service:
// it is in charge (committed, or a first start) and no successor has taken
// over. A new generation that never committed (rolled back, unhealthy)
// shares the sockets with the generation in charge and must leave them, the
// unix socket files and the PID file alone.
func (u *Upgrader) finalLocked() bool {
	return !u.upgraded && (u.committed || u.parent == nil)
}

// removeSocketFiles unlinks the files of unix listeners on a final stop, as
// tableflip does asynchronously: done here, it is done before the process
// can exit.
func (u *Upgrader) removeSocketFiles() {
	for _, ln := range u.Listeners() {
		a, ok := ln.Addr().(*net.UnixAddr)
		if !ok || a.Name == "" || a.Name[0] == '@' || u.sdOwnsPath(a.Name) {
			continue // abstract, or owned by the socket unit
		}
		if fi, err := os.Lstat(a.Name); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(a.Name)
		}
	}
}

// Drain stops accepting on every listener, lets keep-alive clients finish
// (their next response says Connection: close), waits for in-flight
// requests, streams and hijacked connections, force-closes what remains when
// ctx ends (or after Options.DrainTimeout if ctx has no deadline), and closes
// the listeners. Call it once Exit is closed, then Shutdown your http.Server,
// which finds no connection left. Drain is idempotent: later calls wait for
// and return the first one's result.
//
// After a committed upgrade the listeners are paused, so the connections the
// kernel queues go to the new generation. On a final stop (Stop, no
// successor) each listener first takes what the kernel has already queued
// and then closes (listener.Finish), so new connections are refused cleanly
// instead of queued connections being reset.
func (u *Upgrader) Drain(ctx context.Context) (listener.DrainStats, error) {
	u.drainOnce.Do(func() {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, u.opts.DrainTimeout)
			defer cancel()
		}
		u.drainRes = u.drain(ctx)
	})
	return u.drainRes.stats, u.drainRes.err
}

func (u *Upgrader) drain(ctx context.Context) drainResult {
	lns := u.Listeners()
	start := time.Now()
	u.mu.Lock()
	final := u.finalLocked()
	u.mu.Unlock()
	u.emit(Event{Kind: EventDrainStarted, Generation: u.gen, PID: os.Getpid()})
	results := make([]drainResult, len(lns))
	var wg sync.WaitGroup
	for i, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if final {
				// No successor shares the socket: serve what the kernel
				// has queued, then close, rather than reset it.
				fctx, cancel := context.WithTimeout(ctx, finishTimeout)
				_ = ln.Finish(fctx)
				cancel()
			}
			s, err := ln.Drain(ctx)
			results[i] = drainResult{s, err}
		}()
	}
	wg.Wait()
	var total drainResult
	for i, r := range results {
		_ = lns[i].Close()
		total.stats.Conns += r.stats.Conns
		total.stats.ClosedIdle += r.stats.ClosedIdle
		total.stats.ClosedByPeerOrServer += r.stats.ClosedByPeerOrServer
		total.stats.Forced += r.stats.Forced
		if r.err != nil && total.err == nil {
			total.err = r.err
		}
	}
	total.stats.Duration = time.Since(start)
	u.emit(Event{Kind: EventDrainFinished, Generation: u.gen, PID: os.Getpid(), Duration: total.stats.Duration, Drain: total.stats, Err: total.err})
	return total
}

// Close stops the upgrader (see Stop) and waits for its goroutines. It does
// not drain; call Drain first. Idempotent.
func (u *Upgrader) Close() error {
	u.Stop()
	u.wg.Wait()
	return nil
}

var _ io.Closer = (*Upgrader)(nil)
