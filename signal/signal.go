package signal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	ossignal "os/signal"
	"strings"
	"time"
)

// DefaultKillExitCode is the exit status of the process when [Actions.Kill]
// is nil and an immediate stop arrives.
const DefaultKillExitCode = 1

// Causes of a stop. They are the Err of a [*SignalError], so
// errors.Is(context.Cause(ctx), ErrStop) tells a graceful stop from an
// immediate one.
var (
	// ErrStop means a graceful stop was requested (SIGTERM or SIGINT by default).
	ErrStop = errors.New("signal: graceful stop")
	// ErrKill means an immediate stop was requested (SIGQUIT, or a second
	// SIGTERM or SIGINT during a graceful stop, by default).
	ErrKill = errors.New("signal: immediate stop")
)

// SignalError is the cause of every stop: the error passed to [Actions.Stop]
// and [Actions.Kill], and the cause (see [context.Cause]) with which Run
// cancels the contexts of running actions. Err is [ErrStop] or [ErrKill];
// errors.Is sees through to it.
type SignalError struct {
	Signal os.Signal // the signal that was received
	Err    error     // ErrStop or ErrKill
}

// Error reads like "signal: terminated signal received: graceful stop".
func (e *SignalError) Error() string {
	what := "stop"
	if e.Err != nil {
		what = strings.TrimPrefix(e.Err.Error(), "signal: ")
	}
	return fmt.Sprintf("signal: %v signal received: %s", e.Signal, what)
}

// Unwrap returns e.Err.
func (e *SignalError) Unwrap() error { return e.Err }

// Actions are what Run calls when a signal arrives. A nil Upgrade, Reload or
// Stop leaves its signals unsubscribed, so they keep whatever disposition the
// process gave them (for SIGTERM, SIGINT and SIGHUP, by default, death).
//
// Upgrade, Reload and Stop are each called on a goroutine of their own that
// Run owns and waits for. Upgrade and Reload may run at the same time as
// each other (never two calls of the same one); Stop starts only once both
// have returned; Kill runs on Run's goroutine, possibly while any of the
// others runs. Run does not recover their panics (a panic in an
// action is a bug in the program, and hiding it behind a stopped upgrade
// would leave the process running in an unknown state).
type Actions struct {
	// Upgrade is called for an upgrade signal (SIGHUP). At most one call runs
	// at a time; see the package documentation for how signals that arrive
	// meanwhile are coalesced. ctx is cancelled when a stop arrives (with a
	// *SignalError cause) or when Run's context is done (with its cause).
	Upgrade func(ctx context.Context) error

	// Reload is called for a reload signal (SIGUSR2), to hot-swap bundles,
	// flags or plugins. It follows the same rules as Upgrade, in a lane of its
	// own: a reload may run while an upgrade runs.
	Reload func(ctx context.Context) error

	// Stop is the graceful stop (drain and return), called once, for the
	// first stop signal (SIGTERM or SIGINT), after running upgrades and
	// reloads have returned. cause is a *SignalError naming the signal, with
	// Err ErrStop. ctx is live while Stop drains: it is cancelled, with a
	// *SignalError cause whose Err is ErrKill, when an immediate stop arrives
	// and Kill returns, and with the parent's cause when Run's context is
	// done. Run returns what Stop returns.
	Stop func(ctx context.Context, cause error) error

	// Kill is the immediate stop, called at most once, for a kill signal
	// (SIGQUIT) at any time or for a second stop signal once the graceful
	// stop is under way. cause is a *SignalError with Err ErrKill. It is
	// called on Run's goroutine and should not block. Nil means
	// os.Exit(DefaultKillExitCode). If Kill returns, Run cancels the
	// contexts of all running actions (Stop's included) with cause, waits
	// for them to return, and returns cause.
	Kill func(cause error)
}

// Options configure Run. The zero value means all defaults. A nil signal
// list means its default; an empty, non-nil list means no signal at all
// (for example KillSignals: []os.Signal{} keeps Go's own SIGQUIT goroutine
// dump). A signal may be in one list only.
type Options struct {
	// Logger receives a record for every Event (see the package
	// documentation, "Reporting"). Nil discards them: Run logs to
	// slog.Default() only if the program passes it here.
	Logger *slog.Logger

	// OnEvent, if not nil, is called for every Event, in order, from one
	// goroutine at a time (Run's). It must not block: signals wait while it
	// runs.
	OnEvent func(Event)

	// UpgradeSignals trigger Actions.Upgrade. Nil means SIGHUP.
	UpgradeSignals []os.Signal
	// ReloadSignals trigger Actions.Reload. Nil means SIGUSR2.
	ReloadSignals []os.Signal
	// StopSignals trigger Actions.Stop, or Actions.Kill when a graceful stop
	// is already under way. Nil means SIGTERM and SIGINT.
	StopSignals []os.Signal
	// KillSignals trigger Actions.Kill. Nil means SIGQUIT.
	KillSignals []os.Signal
}

// Action names what a signal maps to. Its String is the name records carry
// under the key "action".
type Action int

// The actions. The zero Action is "none": a signal Run does not handle.
const (
	ActionUpgrade Action = iota + 1
	ActionReload
	ActionStop
	ActionKill
)

// String returns the action's name ("upgrade", ...; "none" for 0).
func (a Action) String() string {
	switch a {
	case ActionUpgrade:
		return "upgrade"
	case ActionReload:
		return "reload"
	case ActionStop:
		return "stop"
	case ActionKill:
		return "kill"
	}
	return "none"
}

// EventKind says what happened. Its String is the kebab-case name that
// records carry under the key "event".
type EventKind int

// The kinds of Event.
const (
	// EventReady: Run has subscribed to its signals; from now on they are
	// handled. It is always the first event.
	EventReady EventKind = iota + 1
	// EventReceived: a signal arrived. Action is what it maps to.
	EventReceived
	// EventStarted: Action was called. For stop and kill, Err is the cause.
	EventStarted
	// EventFinished: Action returned Err after Duration.
	EventFinished
	// EventCoalesced: Signal arrived while Action was running; it was folded
	// into the one pending follow-up run of Action.
	EventCoalesced
	// EventDropped: Signal will not run Action, because Run is stopping (or
	// Kill was already called). A pending follow-up that a stop cancels is
	// reported the same way, with the signal that queued it last.
	EventDropped
)

// String returns the kind's name ("ready", "received", ...), or
// "EventKind(n)" for a value outside the constants.
func (k EventKind) String() string {
	switch k {
	case EventReady:
		return "ready"
	case EventReceived:
		return "received"
	case EventStarted:
		return "started"
	case EventFinished:
		return "finished"
	case EventCoalesced:
		return "coalesced"
	case EventDropped:
		return "dropped"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event reports what Run did, in the shape every handoff package shares:
// Kind, Time, Duration, Err, then the package's own fields. Fields that do
// not apply are zero.
type Event struct {
	Kind     EventKind
	Time     time.Time     // when it happened (for EventFinished: when the action returned)
	Duration time.Duration // EventFinished: how long the action ran; 0 otherwise
	Err      error         // EventStarted for stop and kill: the cause; EventFinished: the action's error
	Action   Action        // what the signal maps to (0 for EventReady)
	Signal   os.Signal     // the signal behind the event (nil for EventReady, and for EventFinished but of kill)
}

// Run subscribes to the signals of the non-nil actions (with os/signal's
// Notify), calls the actions as signals arrive, and blocks until it is done:
//
//   - after a graceful stop, when Stop has returned: Run returns Stop's error;
//   - after an immediate stop whose Kill returned: Run returns its cause;
//   - when ctx is done before Stop was called: Run returns ctx.Err(), without
//     calling Stop.
//
// In every case Run first waits for every action it started to return (their
// contexts are cancelled with cause), and unsubscribes before it returns, so
// the signals get back their previous disposition. Run only returns when all
// goroutines it started have ended.
//
// Run returns an error at once if a signal is in more than one list of
// opts. Every running Run gets every signal it subscribed to, so a process
// should run one at a time; a new Run may start once the last has returned.
// [Start] is Run on a goroutine of its own.
func Run(ctx context.Context, a Actions, opts Options) error {
	s, err := subscribe(a, opts)
	if err != nil {
		return err
	}
	return s.run(ctx)
}

// Start is Run on a goroutine of its own, but it subscribes to the signals
// on the calling goroutine, before it returns: from then on no signal of
// the lists meets its default disposition, whether or not the goroutine has
// run yet (a signal that comes first waits for it). A server that must not
// be killed by a SIGTERM once it accepts calls Start before it accepts.
// wait blocks until the dispatching is done and returns what Run would have
// returned; call it from any goroutine, any number of times. Start returns
// an error at once, and starts nothing, where Run would.
//
// In a process that has just started, subscribing first, while nothing else
// runs, is also the fastest way: the Go runtime takes a round trip with its
// signal thread for each signal, which costs several times more while other
// goroutines keep the process's threads busy.
func Start(ctx context.Context, a Actions, opts Options) (wait func() error, err error) {
	s, err := subscribe(a, opts)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = s.run(ctx)
	}()
	return func() error {
		<-done
		return runErr
	}, nil
}

// subscription is Run's state from the subscription on.
type subscription struct {
	a     Actions
	o     Options
	table map[os.Signal]Action
	c     chan os.Signal
}

// subscribe checks opts and subscribes to the signals of the non-nil
// actions.
func subscribe(a Actions, opts Options) (*subscription, error) {
	o := opts.withDefaults()
	table, err := o.table(a)
	if err != nil {
		return nil, err
	}
	if a.Kill == nil {
		a.Kill = func(error) { os.Exit(DefaultKillExitCode) }
	}
	// The dispatcher reads at once and coalesces, so the buffer only has to
	// ride out a burst; os/signal drops what does not fit.
	c := make(chan os.Signal, 32)
	sigs := make([]os.Signal, 0, len(table))
	for s := range table {
		sigs = append(sigs, s)
	}
	if len(sigs) > 0 {
		ossignal.Notify(c, sigs...)
	}
	return &subscription{a: a, o: o, table: table, c: c}, nil
}

// run dispatches until done, then unsubscribes.
func (s *subscription) run(ctx context.Context) error {
	defer ossignal.Stop(s.c)
	return run(ctx, s.a, s.o, s.table, s.c)
}

// withDefaults returns a copy of o with its defaults filled in.
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.UpgradeSignals == nil {
		o.UpgradeSignals = defaultUpgradeSignals()
	}
	if o.ReloadSignals == nil {
		o.ReloadSignals = defaultReloadSignals()
	}
	if o.StopSignals == nil {
		o.StopSignals = defaultStopSignals()
	}
	if o.KillSignals == nil {
		o.KillSignals = defaultKillSignals()
	}
	return o
}

// table maps every signal Run subscribes to onto its action. Lists of nil
// actions are left out; Kill is never nil by the time Run dispatches.
func (o Options) table(a Actions) (map[os.Signal]Action, error) {
	t := make(map[os.Signal]Action)
	add := func(act Action, sigs []os.Signal) error {
		for _, s := range sigs {
			if s == nil {
				return fmt.Errorf("signal: nil signal in the %v signals", act)
			}
			if prev, ok := t[s]; ok && prev != act {
				return fmt.Errorf("signal: %v is in both the %v and the %v signals", s, prev, act)
			}
			t[s] = act
		}
		return nil
	}
	lists := []struct {
		act  Action
		on   bool
		sigs []os.Signal
	}{
		{ActionUpgrade, a.Upgrade != nil, o.UpgradeSignals},
		{ActionReload, a.Reload != nil, o.ReloadSignals},
		{ActionStop, a.Stop != nil, o.StopSignals},
		{ActionKill, true, o.KillSignals},
	}
	for _, l := range lists {
		if !l.on {
			continue
		}
		if err := add(l.act, l.sigs); err != nil {
			return nil, err
		}
	}
	return t, nil
}
