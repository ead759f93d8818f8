package handoff

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	ossignal "os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/handoff-go/handoff/health"
	"github.com/handoff-go/handoff/listener"
	"github.com/handoff-go/handoff/signal"
	"github.com/handoff-go/handoff/upgrader"
)

// Options configure Run. The zero value means all defaults. Each field means
// what the field of the same name in upgrader.Options or signal.Options
// means; they are repeated here so that one struct sets everything.
type Options struct {
	// PIDFile names the generation in charge (upgrader.Options.PIDFile).
	// Under systemd set it to the unit's PIDFile=.
	PIDFile string

	// UpgradeTimeout bounds an upgrade from spawn to commit. Default
	// upgrader.DefaultUpgradeTimeout.
	UpgradeTimeout time.Duration
	// Probation is how long a new generation serves under watch before it
	// commits. Default 0: commit once ready.
	Probation time.Duration
	// HealthCheck is the readiness check of a generation: before it
	// accepts, and during probation. Default: always healthy.
	HealthCheck func(ctx context.Context) error
	// HealthInterval is the period of health checks during probation.
	// Default upgrader.DefaultHealthInterval.
	HealthInterval time.Duration
	// DrainTimeout bounds a generation's drain, after an upgrade or on a
	// stop; connections left then are closed. Default
	// upgrader.DefaultDrainTimeout.
	DrainTimeout time.Duration
	// IdleGrace: while draining, an idle HTTP/1 keep-alive connection is
	// closed once it has been idle this long. Default
	// listener.DefaultIdleGrace.
	IdleGrace time.Duration
	// NoHandOver turns off the hand-over of idle HTTP/1 keep-alive
	// connections to the new generation (upgrader.Options.NoHandOver):
	// they are then drained like the others.
	NoHandOver bool
	// SaveState returns a blob for the next generation, read there with
	// upgrader.FromContext(ctx).State() or the Upgrader's State. Default:
	// none.
	SaveState func() ([]byte, error)
	// MaxStateSize bounds the blob. Default upgrader.DefaultMaxStateSize.
	MaxStateSize int
	// ListenConfig creates the sockets that are not inherited.
	ListenConfig *net.ListenConfig

	// Setup, if set, is called once the Upgrader exists and before Run
	// listens: open packet sockets (ListenPacket) or files (File) to hand
	// over, read the State. An error stops Run before it serves.
	Setup func(u *upgrader.Upgrader) error

	// The termination policy: see "Kubernetes" in the package
	// documentation, and package health. Each field means what the field
	// of the same name in health.Options means.

	// ShutdownDelay: on a graceful stop (SIGTERM, ctx's end, a call of
	// the preStop endpoint) of the generation in charge, serve normally
	// for this long before draining, while load balancers stop routing to
	// the process. During the delay upgrade signals are refused and an
	// upgrade under way is rolled back. Default 0: drain at once.
	ShutdownDelay time.Duration
	// KeepAliveDuringDelay keeps connections open as usual during
	// ShutdownDelay. By default every response of the delay says
	// "Connection: close" (on HTTP/2 net/http then sends a GOAWAY), so
	// that keep-alive clients reconnect, through the load balancer, to
	// instances that stay.
	KeepAliveDuringDelay bool
	// NotReadyOnStop fails the readiness probe (and sets gRPC's health
	// service NOT_SERVING) from the stop on. Default off: since
	// Kubernetes 1.26 a terminating pod's endpoint is not ready anyway,
	// and failing readiness black-holes traffic where kube-proxy falls
	// back to terminating endpoints (see package health).
	NotReadyOnStop bool
	// GracePeriod is the time the platform allows between the stop and
	// SIGKILL (terminationGracePeriodSeconds, TimeoutStopSec): Run logs a
	// warning at start when ShutdownDelay + DrainTimeout do not fit in
	// it. Default 0: no check.
	GracePeriod time.Duration
	// HealthAddr, if set, serves the probes and the preStop endpoint
	// (health's Handler: /livez, /readyz, /startupz, /prestop) on this
	// TCP address, a listener of its own: its connections are not
	// drained (the preStop call waits for the drain) nor counted with
	// the servers', and the kubelet's probes never reach the servers. It
	// is handed to the next generation like the other sockets, which
	// answers on it once it is in charge. The readiness check is
	// HealthCheck. Default: none.
	HealthAddr string
	// GRPCHealth, if set, is gRPC's standard health service
	// (*health.Server of google.golang.org/grpc/health), kept in step
	// with readiness.
	GRPCHealth health.GRPCHealth

	// Reload, if set, is called for SIGUSR2 (hot swaps of bundles, flags,
	// plugins), coalesced as signal.Run does. Default: SIGUSR2 is not
	// handled.
	Reload func(ctx context.Context) error

	// UpgradeSignals, ReloadSignals, StopSignals and KillSignals replace the
	// default signal lists (SIGHUP; SIGUSR2; SIGTERM and SIGINT; SIGQUIT).
	UpgradeSignals, ReloadSignals, StopSignals, KillSignals []os.Signal

	// Logger receives every event of the upgrader and the signals, and
	// Run's own records. Nil means discard.
	Logger *slog.Logger
	// OnEvent, if set, is called for every upgrader event; it must not
	// block.
	OnEvent func(upgrader.Event)
	// OnSignal, if set, is called for every signal event; it must not
	// block.
	OnSignal func(signal.Event)
	// OnHealth, if set, is called for every event of the termination
	// policy (health.Event); it must not block.
	OnHealth func(health.Event)
}

// ListenAndServe serves srv on srv.Addr with every guarantee of Run. It is
// Run(context.Background(), opts, HTTP(srv)).
func ListenAndServe(srv *http.Server, opts Options) error {
	return Run(context.Background(), opts, HTTP(srv))
}

// Run serves every server on its addresses and upgrades, drains and stops the
// process when it is told to, losing no request:
//
//   - it listens on each address, or adopts the socket the previous
//     generation or systemd's socket activation passed for it;
//   - it handles signals from before the generation is ready: SIGHUP
//     upgrades (to the binary at os.Args[0]; refused as PID 1, see
//     ErrContainerInit), SIGUSR2 calls Options.Reload, SIGTERM or SIGINT
//     (or ctx ending, or a call of the preStop endpoint) stop gracefully,
//     and a second one, or SIGQUIT, stops at once;
//   - it runs the health check, starts accepting, holds the probation of a
//     new generation, and takes charge (PID file, systemd's READY=1);
//   - a graceful stop follows the termination policy: the generation in
//     charge serves on for Options.ShutdownDelay (answering with
//     "Connection: close"), then drains; with Options.HealthAddr the
//     probes and the preStop endpoint answer on a port of their own
//     throughout (see package health);
//   - when a successor commits or a stop arrives, it drains every server
//     (HTTP/1 connections end without losing a request, HTTP/2 and gRPC
//     connections get a GOAWAY) and returns.
//
// Run returns nil after a graceful stop or once a successor has taken over:
// the process should then exit 0. It returns an error if it could not start
// (New, listening), if this generation failed before it took charge (a
// failed health check, or a rollback by the previous generation, which keeps
// serving), if a server failed, or, after an immediate stop, the
// *signal.SignalError that caused it. Run is meant to be called once per
// process (see upgrader.New). After a termination that the preStop endpoint
// began, Run leaves SIGTERM (and the other stop signals) ignored when it
// returns: the kubelet sends it once the hook has returned, which may be
// while the program exits, and the program is exiting anyway.
func Run(ctx context.Context, opts Options, servers ...Server) error {
	if len(servers) == 0 {
		return errors.New("handoff: Run needs a Server")
	}
	for _, s := range servers {
		if s.serve == nil {
			return errors.New("handoff: a Server must come from HTTP or GRPC")
		}
		if len(s.addrs) == 0 {
			return fmt.Errorf("handoff: a %s Server has no address", s.name)
		}
	}
	r := &runner{opts: opts, servers: append([]Server(nil), servers...), log: opts.Logger, drained: make(chan struct{})}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.kill, r.cancelKill = context.WithCancelCause(context.Background())
	r.sigLog = slog.New(&generationHandler{Handler: r.log.Handler(), gen: &r.generation})
	r.drainTimeout = opts.DrainTimeout
	if r.drainTimeout <= 0 {
		r.drainTimeout = upgrader.DefaultDrainTimeout
	}
	return r.run(ctx)
}

// runner is one Run.
type runner struct {
	opts         Options
	servers      []Server
	log          *slog.Logger
	drainTimeout time.Duration
	upg          *upgrader.Upgrader
	policy       *health.Policy

	healthLn      atomic.Pointer[listener.Listener] // Options.HealthAddr's
	healthSrv     *http.Server
	healthServing sync.WaitGroup

	serving  sync.WaitGroup
	serveErr chan error

	kill       context.Context // cancelled, with the signal as cause, by an immediate stop
	cancelKill context.CancelCauseFunc
	drained    chan struct{} // closed once the last drain is over

	cancelSignals context.CancelFunc
	waitSignals   func() error  // signal.Start's wait
	sigLog        *slog.Logger  // the signals' records: r.log's, with the generation once known
	generation    atomic.Int64  // this generation, once the Upgrader knows it
	setUp         chan struct{} // closed once start has returned, or New failed
	ok            bool          // start succeeded: the signals' actions may run

	upgrades      sync.WaitGroup  // upgrade calls in flight
	upgradeCtx    context.Context // of the upgrade calls; ends when Run does
	cancelUpgrade context.CancelFunc
}

func (r *runner) run(ctx context.Context) (err error) {
	// The signals are subscribed to first, on this goroutine, before the
	// Upgrader introduces itself to the previous generation: the runtime
	// takes a round trip with its signal thread for each signal, cheapest
	// while nothing else runs (see signal.Start). Their actions wait until
	// start has returned (setUp).
	defer r.cancelKill(nil)
	r.setUp = make(chan struct{})
	if err := r.beginSignals(); err != nil {
		return err
	}
	upg, err := upgrader.New(upgrader.Options{
		UpgradeTimeout: r.opts.UpgradeTimeout,
		Probation:      r.opts.Probation,
		HealthCheck:    r.opts.HealthCheck,
		HealthInterval: r.opts.HealthInterval,
		DrainTimeout:   r.opts.DrainTimeout,
		IdleGrace:      r.opts.IdleGrace,
		NoHandOver:     r.opts.NoHandOver,
		PIDFile:        r.opts.PIDFile,
		SaveState:      r.opts.SaveState,
		MaxStateSize:   r.opts.MaxStateSize,
		ListenConfig:   r.opts.ListenConfig,
		Logger:         r.log,
		OnEvent:        r.opts.OnEvent,
	})
	if err != nil {
		close(r.setUp)
		r.stopSignals()
		return err
	}
	r.upg = upg
	r.generation.Store(int64(upg.Generation()))
	r.log = r.log.With("generation", upg.Generation())
	defer func() { err = errors.Join(err, upg.Close()) }()
	r.upgradeCtx, r.cancelUpgrade = context.WithCancel(context.Background())
	defer r.upgrades.Wait()
	defer r.cancelUpgrade()
	r.policy = health.New(health.Options{
		Ready:                r.opts.HealthCheck,
		ShutdownDelay:        r.opts.ShutdownDelay,
		KeepAliveDuringDelay: r.opts.KeepAliveDuringDelay,
		NotReadyOnStop:       r.opts.NotReadyOnStop,
		Drain:                upg.Stop,
		DrainTimeout:         r.drainTimeout,
		GracePeriod:          r.opts.GracePeriod,
		GRPC:                 r.opts.GRPCHealth,
		Logger:               r.log,
		OnEvent:              r.opts.OnHealth,
	})
	defer r.policy.Close()

	addrs, err := r.start()
	r.ok = err == nil
	close(r.setUp)
	if err != nil {
		r.stopSignals()
		upg.Stop()
		_ = r.drain()
		r.serving.Wait()
		r.stopHealth()
		return err
	}
	defer r.stopSignals()

	readyErr := upg.Ready(ctx)
	if readyErr == nil {
		r.policy.Started()
		attrs := []any{"addr", addrs[0], "addrs", addrs}
		if ln := r.healthLn.Load(); ln != nil {
			ln.Resume()
			attrs = append(attrs, "health_addr", ln.Addr().String())
		}
		r.log.Info("handoff: serving", attrs...)
	} else {
		r.log.Error("handoff: not ready", "error", readyErr)
	}
	serveErr := r.serveUntilExit(ctx)
	if errors.Is(r.policy.Cause(), health.ErrPreStop) {
		// Before the preStop calls return: the kubelet's SIGTERM comes
		// after them, and once Run has returned (its signals
		// unsubscribed) it would end the process with the signal's
		// status instead of 0.
		ossignal.Ignore(r.stopSignalList()...)
	}
	// After a hand-over (no stop: a successor answers the probes now),
	// the health server ends first, so that a probe it accepted before
	// pausing is answered as draining, not as stopped. After a stop it
	// ends last: the preStop calls return once the drain is over.
	handedOver := r.policy.Cause() == nil
	if handedOver {
		r.stopHealth()
	}
	r.policy.Drained()
	close(r.drained)
	r.serving.Wait()
	if !handedOver {
		r.stopHealth()
	}
	r.log.Info("handoff: exiting")
	var se *signal.SignalError
	switch {
	case errors.As(context.Cause(r.kill), &se):
		return se
	case serveErr != nil:
		return serveErr
	case readyErr != nil && !errors.Is(readyErr, upgrader.ErrStopped):
		return readyErr
	}
	return nil
}

// start runs Setup, listens, serves, and waits until the signals are
// handled; it returns the addresses served.
func (r *runner) start() ([]string, error) {
	if r.opts.Setup != nil {
		if err := r.opts.Setup(r.upg); err != nil {
			return nil, err
		}
	}
	addrs, err := r.listen()
	if err == nil && r.opts.HealthAddr != "" {
		err = r.listenHealth()
	}
	if err != nil {
		return nil, err
	}
	r.serve()
	r.serveHealth()
	return addrs, nil
}

// serveUntilExit serves until this generation must exit (a successor
// committed, a stop, ctx, a failed server, an immediate stop) and drains;
// after a reclaim it serves on. It returns the first server's failure.
func (r *runner) serveUntilExit(ctx context.Context) (serveErr error) {
	done, killed, stopping := ctx.Done(), r.kill.Done(), r.policy.Stopping()
	for {
		select {
		case <-r.upg.Exit():
		case <-stopping:
			// The termination began (a stop signal, ctx, the preStop
			// endpoint): upgrade signals are refused from now on
			// (upgrade). If a shutdown delay holds the drain back, an
			// upgrade under way is rolled back now rather than at its
			// end. Without one the policy has stopped the Upgrader
			// already, which rolls it back as a stop does.
			stopping = nil
			if r.policy.Phase() == health.PhaseDelaying {
				r.cancelUpgrade()
			}
			continue
		case <-done:
			done = nil
			r.log.Info("handoff: stopping", "error", context.Cause(ctx))
			r.policy.Stop(context.Cause(ctx))
			continue
		case err := <-r.serveErr:
			if serveErr == nil {
				serveErr = err
				r.log.Error("handoff: a server failed; stopping", "error", err)
			}
			r.upg.Stop()
			continue
		case <-killed:
			killed = nil
			r.upg.Stop()
			continue
		}
		r.policy.Draining()
		// A successor took charge (no stop, no failure): it answers the
		// probes from now on; the kernel queues their connections for it
		// until it accepts.
		ln := r.healthLn.Load()
		handedOver := r.policy.Cause() == nil && killed != nil && serveErr == nil
		if handedOver && ln != nil {
			ln.Pause()
		}
		if err := r.drain(); errors.Is(err, upgrader.ErrReclaimed) {
			r.log.Warn("handoff: the new generation died while this one drained; serving again")
			if handedOver && ln != nil {
				ln.Resume()
			}
			r.policy.Started()
			continue
		}
		return serveErr
	}
}

// listen opens every server's sockets (or adopts inherited ones).
func (r *runner) listen() (addrs []string, err error) {
	for i := range r.servers {
		s := &r.servers[i]
		s.setup(r.upg, r.policy)
		for _, a := range s.addrs {
			ln, err := listen(r.upg, a)
			if err != nil {
				return nil, fmt.Errorf("handoff: %s server: %w", s.name, err)
			}
			s.lns = append(s.lns, ln)
			addrs = append(addrs, ln.Addr().String())
		}
	}
	return addrs, nil
}

// serve starts every server on its listeners.
func (r *runner) serve() {
	n := 0
	for _, s := range r.servers {
		n += len(s.lns)
	}
	r.serveErr = make(chan error, n)
	for _, s := range r.servers {
		for _, ln := range s.lns {
			r.serving.Add(1)
			go func() {
				defer r.serving.Done()
				if err := s.serve(ln); !s.closed(err) {
					r.serveErr <- fmt.Errorf("handoff: %s server on %s: %w", s.name, ln.Addr(), err)
				}
			}()
		}
	}
}

// drain ends this generation's connections: see Run.
func (r *runner) drain() error {
	ctx, cancel := context.WithTimeout(r.kill, r.drainTimeout)
	defer cancel()
	var early sync.WaitGroup
	for _, s := range r.servers {
		if !s.early {
			continue
		}
		// Its stop cannot be undone: no taking charge again.
		r.upg.Retire()
		early.Add(1)
		go func() {
			defer early.Done()
			r.upg.StopAccepting(ctx)
			if err := s.stop(ctx); err != nil {
				r.log.Warn("handoff: drain", "server", s.name, "error", err)
			}
		}()
	}
	stats, err := r.upg.Drain(ctx)
	if errors.Is(err, upgrader.ErrReclaimed) {
		return err
	}
	if err != nil {
		r.log.Warn("handoff: drain ended at its deadline", "error", err, "forced", stats.Forced)
	}
	var late sync.WaitGroup
	for _, s := range r.servers {
		if s.early {
			continue
		}
		late.Add(1)
		go func() {
			defer late.Done()
			if err := s.stop(ctx); err != nil {
				r.log.Warn("handoff: drain", "server", s.name, "error", err)
			}
		}()
	}
	late.Wait()
	early.Wait()
	return nil
}

// beginSignals subscribes to the signals and starts handling them, or
// returns signal.Start's error (invalid signal lists). It comes before the
// generation accepts: no signal finds its default disposition once this
// process holds connections. The actions wait for setUp; the records carry
// the generation once it is known.
func (r *runner) beginSignals() error {
	ctx, cancel := context.WithCancel(context.Background())
	var reload func(context.Context) error
	if fn := r.opts.Reload; fn != nil {
		reload = func(ctx context.Context) error {
			if !r.waitSetUp(ctx) {
				return nil
			}
			return fn(ctx)
		}
	}
	wait, err := signal.Start(ctx, signal.Actions{
		Upgrade: r.upgrade,
		Reload:  reload,
		Stop:    r.stop,
		Kill:    r.immediate,
	}, signal.Options{
		Logger:         r.sigLog,
		OnEvent:        r.opts.OnSignal,
		UpgradeSignals: r.opts.UpgradeSignals,
		ReloadSignals:  r.opts.ReloadSignals,
		StopSignals:    r.opts.StopSignals,
		KillSignals:    r.opts.KillSignals,
	})
	if err != nil {
		cancel()
		return err
	}
	r.cancelSignals, r.waitSignals = cancel, wait
	return nil
}

// stopSignals ends the handling of signals and waits for its actions to
// return. It is idempotent.
func (r *runner) stopSignals() {
	r.cancelSignals()
	_ = r.waitSignals()
}

// waitSetUp waits until the runner has started, for an action of a signal
// that came early; it reports false if the action should do nothing: Run
// failed to start, or ctx ended.
func (r *runner) waitSetUp(ctx context.Context) bool {
	select {
	case <-r.setUp:
		return r.ok
	case <-ctx.Done():
		return false
	}
}

// generationHandler adds the generation to every record once it is known,
// in the place the runner's logger has it (see Run): the signals are
// handled, and may log, before the Upgrader has learnt it.
type generationHandler struct {
	slog.Handler
	gen *atomic.Int64
}

// Handle adds the generation, if known, before the record's own attributes.
func (h *generationHandler) Handle(ctx context.Context, rec slog.Record) error {
	g := h.gen.Load()
	if g == 0 {
		return h.Handler.Handle(ctx, rec)
	}
	out := slog.NewRecord(rec.Time, rec.Level, rec.Message, rec.PC)
	out.AddAttrs(slog.Int64("generation", g))
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

// WithAttrs returns a generationHandler on the inner handler's WithAttrs.
func (h *generationHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &generationHandler{Handler: h.Handler.WithAttrs(attrs), gen: h.gen}
}

// WithGroup returns a generationHandler on the inner handler's WithGroup.
func (h *generationHandler) WithGroup(name string) slog.Handler {
	return &generationHandler{Handler: h.Handler.WithGroup(name), gen: h.gen}
}

// upgrade is the upgrade signal's action. It returns at once: the upgrade
// runs on a goroutine of Run's, so that the signal dispatcher never holds a
// request back. The Upgrader coalesces requests itself and hands the ones
// that arrive during an upgrade to the committed successor; a request left
// pending in the dispatcher when the drain ends would be lost. A stop signal
// stops the Upgrader, which rolls back an upgrade that has not committed.
func (r *runner) upgrade(ctx context.Context) error {
	if !r.waitSetUp(ctx) {
		return nil
	}
	if os.Getpid() == 1 {
		r.log.Error("handoff: upgrade refused", "error", ErrContainerInit)
		return nil
	}
	select {
	case <-r.policy.Stopping():
		r.log.Warn("handoff: upgrade refused", "error", errStopping)
		return nil
	default:
	}
	r.upgrades.Add(1)
	go func() {
		defer r.upgrades.Done()
		err := r.upg.Upgrade(r.upgradeCtx)
		var ue *upgrader.UpgradeError
		if err != nil && (errors.As(err, &ue) || !errors.Is(err, upgrader.ErrStopped)) {
			r.log.Error("handoff: upgrade failed", "error", err)
		}
	}()
	return nil
}

// stop is the graceful stop: it begins the termination policy (a stop that
// finds it begun, after a call of the preStop endpoint, changes nothing) and
// returns once the drain is over. An immediate stop cancels ctx.
func (r *runner) stop(ctx context.Context, cause error) error {
	if !r.waitSetUp(ctx) {
		return nil
	}
	r.log.Info("handoff: stopping", "error", cause)
	r.policy.Stop(cause)
	select {
	case <-r.drained:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// immediate is the immediate stop: every connection is closed now and Run
// returns cause.
func (r *runner) immediate(cause error) {
	r.sigLog.Warn("handoff: stopping at once", "error", cause)
	r.cancelKill(cause)
}

// ErrContainerInit is why Run refuses to upgrade in place as PID 1 (it logs
// the refusal, and the process serves on): PID 1 is the init of its
// container (or of its PID namespace), and when it exits the container
// ends, the new generation with it. In Kubernetes, replace the binary with
// a rolling update of the image; hot swaps (SIGUSR2, watched files) work as
// anywhere.
var ErrContainerInit = errors.New("handoff: this process is PID 1, the init of its container, which ends when it exits: roll out a new image instead of upgrading in place")

// errStopping is why an upgrade signal is refused once the termination
// policy has begun.
var errStopping = errors.New("handoff: the process is stopping")

// listenHealth opens (or adopts) the health listener: a socket handed over
// as a file, not one of the Upgrader's listeners, so that its drains leave
// it alone. A new generation keeps it paused until it is in charge.
func (r *runner) listenHealth() error {
	addr := r.opts.HealthAddr
	f, err := r.upg.File("handoff-health "+addr, func() (*os.File, error) {
		lc := r.opts.ListenConfig
		if lc == nil {
			lc = &net.ListenConfig{}
		}
		ln, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		tl, ok := ln.(*net.TCPListener)
		if !ok {
			return nil, fmt.Errorf("not a TCP listener: %T", ln)
		}
		return tl.File()
	})
	if err != nil {
		return fmt.Errorf("handoff: health server on %s: %w", addr, err)
	}
	defer f.Close()
	nl, err := net.FileListener(f)
	if err != nil {
		return fmt.Errorf("handoff: health server on %s: %w", addr, err)
	}
	ln := listener.Wrap(nl, listener.Options{})
	if r.upg.HasParent() {
		ln.Pause()
	}
	r.healthSrv = &http.Server{Handler: r.policy.Handler(), ReadHeaderTimeout: 10 * time.Second}
	r.healthLn.Store(ln)
	return nil
}

// serveHealth serves the health listener, if there is one, until
// stopHealth.
func (r *runner) serveHealth() {
	ln := r.healthLn.Load()
	if ln == nil {
		return
	}
	r.healthServing.Add(1)
	go func() {
		defer r.healthServing.Done()
		if err := r.healthSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("handoff: health server failed", "error", err)
		}
	}()
}

// stopHealthTimeout bounds the health server's shutdown: its requests
// (probes, preStop calls that the end of the drain has released) take
// milliseconds.
const stopHealthTimeout = time.Second

// stopHealth ends the health server, bounded by stopHealthTimeout: see run
// for when.
func (r *runner) stopHealth() {
	if r.healthSrv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopHealthTimeout)
	defer cancel()
	if err := r.healthSrv.Shutdown(ctx); err != nil {
		_ = r.healthSrv.Close()
	}
	if ln := r.healthLn.Load(); ln != nil {
		_ = ln.Close()
	}
	r.healthServing.Wait()
}

// stopSignalList is the stop signals Run handles, and SIGTERM.
func (r *runner) stopSignalList() []os.Signal {
	sigs := []os.Signal{syscall.SIGTERM, os.Interrupt}
	if r.opts.StopSignals != nil {
		sigs = append([]os.Signal{syscall.SIGTERM}, r.opts.StopSignals...)
	}
	return sigs
}
