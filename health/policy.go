package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options.
const (
	// DefaultDrainTimeout is upgrader.DefaultDrainTimeout, the drain's
	// bound when the program sets none.
	DefaultDrainTimeout = 30 * time.Second
	// PreStopSlack is added to ShutdownDelay + DrainTimeout to make the
	// preStop endpoint's deadline: the time a forced drain takes to end.
	PreStopSlack = time.Second
)

var (
	// ErrPreStop is the cause of a termination that the preStop endpoint
	// started (Cause).
	ErrPreStop = errors.New("health: preStop endpoint called")
	// ErrGracePeriod: ShutdownDelay + DrainTimeout do not fit in the
	// grace period; New reports it (EventGracePeriod) with the figures.
	ErrGracePeriod = errors.New("health: shutdown delay and drain timeout do not fit in the grace period")
)

// Phase is where a process is in its life, as its probes see it.
type Phase int32

// The phases, in order. A generation that handed over to a successor
// that then died goes back from PhaseDraining to PhaseServing (Started);
// no other phase goes back.
const (
	// PhaseStarting: not in charge yet (not ready, not started).
	PhaseStarting Phase = iota
	// PhaseServing: in charge and serving.
	PhaseServing
	// PhaseDelaying: stopping; serving normally for Options.ShutdownDelay.
	PhaseDelaying
	// PhaseDraining: the drain has begun.
	PhaseDraining
	// PhaseStopped: the drain is over; the process exits.
	PhaseStopped
)

var phaseNames = [...]string{"starting", "serving", "delaying", "draining", "stopped"}

func (p Phase) String() string {
	if p >= 0 && int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("phase(%d)", int(p))
}

// GRPCHealth is what a Policy needs of gRPC's standard health service:
// *health.Server of google.golang.org/grpc/health has these methods.
// Shutdown sets every service NOT_SERVING and ignores later changes until
// Resume, which sets every service SERVING.
type GRPCHealth interface {
	Shutdown()
	Resume()
}

// Options configure a Policy. The zero value means all defaults.
type Options struct {
	// Ready is the readiness check, run for each readiness probe while
	// the process serves (ctx is the probe's request's). Default: always
	// ready.
	Ready func(ctx context.Context) error

	// ShutdownDelay: after Stop, a process in charge serves normally for
	// this long before Drain is called. Default 0: Drain is called at
	// once. A process not yet in charge (PhaseStarting) never waits: no
	// load balancer routes to it.
	ShutdownDelay time.Duration
	// KeepAliveDuringDelay keeps connections open as usual during
	// ShutdownDelay. By default Wrap answers every request of the delay
	// with "Connection: close" (HTTP/1: the connection closes after the
	// response; HTTP/2: net/http sends a GOAWAY), so that keep-alive
	// clients move to other instances while this one still serves.
	KeepAliveDuringDelay bool
	// NotReadyOnStop fails the readiness probe (and sets gRPC's health
	// NOT_SERVING) from Stop on. Default off: see the package
	// documentation for why.
	NotReadyOnStop bool

	// Drain is called once, when the delay ends, or at Stop itself when
	// there is no delay to serve (no ShutdownDelay, not in charge yet, a
	// drain under way already): it must begin the drain and return
	// without waiting (upgrader's Stop does, with the program's drain
	// loop), and the program calls Drained when the drain is over.
	// Default: nothing.
	Drain func()
	// DrainTimeout is the program's bound on its drain: with
	// ShutdownDelay it makes the preStop endpoint's deadline and the
	// grace period's check. Default DefaultDrainTimeout.
	DrainTimeout time.Duration
	// GracePeriod is the time the platform gives the process between its
	// stop and SIGKILL (a pod's terminationGracePeriodSeconds, systemd's
	// TimeoutStopSec). If set and ShutdownDelay + DrainTimeout do not fit
	// in it (reach it or more), New reports EventGracePeriod, a warning.
	// Default 0: no check.
	GracePeriod time.Duration

	// GRPC, if set, is gRPC's health service to keep in step: see the
	// package documentation.
	GRPC GRPCHealth

	// Logger receives a record for every event. Nil means discard.
	Logger *slog.Logger
	// OnEvent, if set, is called synchronously for every event, in order;
	// it must not block.
	OnEvent func(Event)
}

// Policy is one process's probes and termination policy. All methods are
// safe for concurrent use; every method but Handler's preStop call returns
// without waiting.
type Policy struct {
	opts    Options
	log     *slog.Logger
	created time.Time
	stopped chan struct{} // closed by the first Stop
	done    chan struct{} // closed by Drained

	// phase is written under mu and read without it by the handlers (one
	// atomic load per request for Wrap).
	phase atomic.Int32

	// emitMu serialises the side effects of the changes (events, gRPC
	// calls) so that they happen in the order of the changes; it is taken
	// before mu is released, and never the other way round, so that an
	// OnEvent callback may call the Policy's getters.
	emitMu sync.Mutex

	mu          sync.Mutex
	stopping    bool // Stop was called: no way back to serving
	cause       error
	stoppedAt   time.Time // when Stop was called
	drainAt     time.Time // when the drain began
	timer       *time.Timer
	drained     bool
	drainCalled bool
	closed      bool
	preStops    int
}

// New returns a Policy in PhaseStarting. If opts.GracePeriod is set and
// ShutdownDelay + DrainTimeout do not fit in it, it reports
// EventGracePeriod (a warning record with the figures) before it returns.
func New(opts Options) *Policy {
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.ShutdownDelay < 0 {
		opts.ShutdownDelay = 0
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Policy{opts: opts, log: opts.Logger, created: time.Now(), stopped: make(chan struct{}), done: make(chan struct{})}
	if g := opts.GracePeriod; g > 0 && opts.ShutdownDelay+opts.DrainTimeout >= g {
		p.emit(Event{Kind: EventGracePeriod, Time: time.Now(), Phase: PhaseStarting,
			Err: fmt.Errorf("shutdown delay %s + drain timeout %s = %s, grace period %s: the process may be killed before its drain ends: %w",
				opts.ShutdownDelay, opts.DrainTimeout, opts.ShutdownDelay+opts.DrainTimeout, g, ErrGracePeriod)})
	}
	return p
}

// Phase returns the current phase.
func (p *Policy) Phase() Phase { return Phase(p.phase.Load()) }

// Stopping returns a channel that is closed by the first Stop: the
// termination has begun (a shutdown delay, or the drain), and there is no
// way back. A program that upgrades in place refuses upgrades from then on
// and rolls back one under way (handoff.Run does).
func (p *Policy) Stopping() <-chan struct{} { return p.stopped }

// Done returns a channel that is closed once the drain is over (Drained).
func (p *Policy) Done() <-chan struct{} { return p.done }

// Cause returns the cause Stop was first called with, or nil before.
func (p *Policy) Cause() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cause
}

// Started tells the Policy that the process is in charge and serves: the
// startup probe turns green, readiness follows Options.Ready, gRPC's health
// service is resumed. Called again after Draining for a drain that was
// called off (a successor died, this generation serves again), it goes
// back to PhaseServing; after Stop, or in another phase, it does nothing.
// Idempotent.
func (p *Policy) Started() {
	p.mu.Lock()
	ph := p.Phase()
	if p.stopping || p.drained || (ph != PhaseStarting && ph != PhaseDraining) {
		p.mu.Unlock()
		return
	}
	p.phase.Store(int32(PhaseServing))
	now := time.Now()
	d := now.Sub(p.created)
	if ph == PhaseDraining {
		d = now.Sub(p.drainAt)
	}
	p.emitMu.Lock()
	p.mu.Unlock()
	defer p.emitMu.Unlock()
	if p.opts.GRPC != nil {
		p.opts.GRPC.Resume()
	}
	p.emitLocked(Event{Kind: EventServing, Time: now, Duration: d, Phase: PhaseServing})
}

// Stop begins the termination policy once, with cause as its reason: in
// PhaseServing the process serves on for ShutdownDelay (PhaseDelaying),
// then the drain begins (PhaseDraining) and Options.Drain is called; in
// PhaseStarting, or with no delay, that happens at once; while a drain is
// under way already (a hand-over) Options.Drain is called, so that the
// drain is now a final one. With NotReadyOnStop readiness fails from now
// on. Stop does not wait: Done is closed once the program has called
// Drained. Later calls, and calls after Close or Drained, do nothing.
func (p *Policy) Stop(cause error) {
	p.mu.Lock()
	if p.stopping || p.closed || p.drained {
		p.mu.Unlock()
		return
	}
	p.stopping, p.cause, p.stoppedAt = true, cause, time.Now()
	delay := p.opts.ShutdownDelay
	if p.Phase() != PhaseServing {
		delay = 0
	}
	if delay > 0 {
		p.phase.Store(int32(PhaseDelaying))
		p.timer = time.AfterFunc(delay, p.delayOver)
	}
	// After the phase: a receiver sees PhaseDelaying, or a later phase.
	close(p.stopped)
	ev := Event{Kind: EventStopping, Time: p.stoppedAt, Err: cause, Phase: p.Phase(), Delay: delay}
	p.emitMu.Lock()
	p.mu.Unlock()
	if p.opts.NotReadyOnStop && p.opts.GRPC != nil {
		p.opts.GRPC.Shutdown()
	}
	p.emitLocked(ev)
	p.emitMu.Unlock()
	if delay == 0 {
		p.beginDrain()
	}
}

// delayOver ends the delay: the drain begins.
func (p *Policy) delayOver() {
	p.mu.Lock()
	over := p.Phase() == PhaseDelaying && !p.closed
	p.mu.Unlock()
	if over {
		p.beginDrain()
	}
}

// beginDrain moves to PhaseDraining (if a drain has not begun yet) and
// calls Options.Drain, once.
func (p *Policy) beginDrain() {
	p.draining()
	p.mu.Lock()
	call := !p.drainCalled && !p.closed
	p.drainCalled = true
	p.mu.Unlock()
	if call && p.opts.Drain != nil {
		p.opts.Drain()
	}
}

// Draining tells the Policy that a drain has begun, whatever began it (the
// end of the delay, an upgrade's hand-over, an immediate stop): it cancels
// a delay still running, without calling Options.Drain. Idempotent.
func (p *Policy) Draining() { p.draining() }

// draining moves to PhaseDraining; it reports whether it did (false in
// PhaseDraining or later).
func (p *Policy) draining() bool {
	p.mu.Lock()
	ph := p.Phase()
	if ph >= PhaseDraining {
		p.mu.Unlock()
		return false
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	now := time.Now()
	p.drainAt = now
	p.phase.Store(int32(PhaseDraining))
	var d time.Duration
	if ph == PhaseDelaying {
		d = now.Sub(p.stoppedAt)
	}
	p.emitMu.Lock()
	p.mu.Unlock()
	defer p.emitMu.Unlock()
	p.emitLocked(Event{Kind: EventDraining, Time: now, Duration: d, Phase: PhaseDraining})
	return true
}

// Drained tells the Policy that the drain is over and the process exits:
// readiness fails, gRPC's health service is shut down, Done is closed (so
// the preStop calls return). Idempotent.
func (p *Policy) Drained() {
	p.mu.Lock()
	if p.drained {
		p.mu.Unlock()
		return
	}
	p.drained = true
	if p.timer != nil {
		p.timer.Stop()
	}
	now := time.Now()
	var d time.Duration
	if !p.drainAt.IsZero() {
		d = now.Sub(p.drainAt)
	}
	p.phase.Store(int32(PhaseStopped))
	p.emitMu.Lock()
	p.mu.Unlock()
	if p.opts.GRPC != nil {
		p.opts.GRPC.Shutdown()
	}
	p.emitLocked(Event{Kind: EventDrained, Time: now, Duration: d, Phase: PhaseStopped})
	p.emitMu.Unlock()
	close(p.done)
}

// Close stops a delay still running (Options.Drain is then not called) and
// makes later Stop calls do nothing. It does not change the phase; call it
// when the program ends without Drained. Idempotent.
func (p *Policy) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
	}
}

// ready is the readiness check of a probe: nil when ready.
func (p *Policy) ready(ctx context.Context) error {
	switch ph := p.Phase(); ph {
	case PhaseStarting, PhaseStopped:
		return errors.New(ph.String())
	case PhaseDelaying, PhaseDraining:
		if p.opts.NotReadyOnStop {
			return fmt.Errorf("%s: %w", ph, p.Cause())
		}
	}
	if p.opts.Ready == nil {
		return nil
	}
	return p.opts.Ready(ctx)
}

// preStopDeadline is when a preStop call gives up waiting.
func (p *Policy) preStopDeadline() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stoppedAt.Add(p.opts.ShutdownDelay + p.opts.DrainTimeout + PreStopSlack)
}

// preStop counts a call of the preStop endpoint and reports it.
func (p *Policy) preStop() {
	p.mu.Lock()
	p.preStops++
	ev := Event{Kind: EventPreStop, Time: time.Now(), Phase: p.Phase(), Calls: p.preStops}
	p.emitMu.Lock()
	p.mu.Unlock()
	defer p.emitMu.Unlock()
	p.emitLocked(ev)
}
