// Package signal maps OS signals to the actions of a server that upgrades
// itself in place: upgrade, reload, graceful stop and immediate stop.
//
// The caller passes the actions as funcs in [Actions] and calls [Run], which
// blocks while it dispatches signals and returns once the server has stopped
// (Stop returned) or its context is done. Everything Run starts has ended when
// it returns. [Start] does the same on a goroutine of its own, once it has
// subscribed: a server calls it before it accepts, so that no signal meets
// its default disposition while the server holds connections. Every running
// Run gets every signal it subscribes to, so run one per process.
//
// # Signals
//
// By default (on unix; each list can be replaced in [Options]):
//
//	signal            action
//	SIGHUP            Actions.Upgrade (coalesced, see below)
//	SIGUSR2           Actions.Reload, only if Reload is not nil (coalesced the same way)
//	SIGTERM, SIGINT   Actions.Stop: graceful stop, drain and return
//	  again, while the graceful stop is under way:  Actions.Kill
//	SIGQUIT           Actions.Kill: immediate stop, at any time
//
// Signals of a nil Upgrade, Reload or Stop are not subscribed and keep their
// default disposition (in Go: SIGHUP, SIGTERM and SIGINT end the process,
// SIGUSR2 is ignored). A nil Kill means os.Exit(DefaultKillExitCode). To keep
// Go's goroutine dump on SIGQUIT, set KillSignals to an empty list. Once Run
// has returned, its signals are unsubscribed: a SIGTERM then kills the
// process as if Run had never been called. Outside unix, only os.Interrupt
// (stop) has a default.
//
// # Coalescing
//
// Upgrades never overlap: at most one Upgrade call runs at a time. An upgrade
// signal that arrives while an upgrade runs starts nothing; it marks one
// follow-up upgrade as pending, and every further upgrade signal that arrives
// before the follow-up starts is folded into it. When the running upgrade
// returns, whether it succeeded or failed, the pending follow-up starts at
// once. So any number of signals during one upgrade give exactly one more
// upgrade: a burst of N signals that ends before the first upgrade returns
// runs 2 upgrades in all, whatever N. And every upgrade signal is followed by
// an upgrade that starts after it, which therefore sees the newest binary on
// disk. The follow-up runs even after a failure because
// the signal that asked for it may announce the fixed binary.
//
// Reloads follow the same rule in a lane of their own: a reload may run while
// an upgrade runs, but never two reloads at once.
//
// # Stopping
//
// The first stop signal begins the graceful stop: the contexts of the running
// Upgrade and Reload calls are cancelled with a [*SignalError] cause (Err
// [ErrStop]) that names the signal, pending follow-ups are dropped, later
// upgrade and reload signals are dropped, and once the running calls have
// returned Run calls Stop with the same cause and a context that stays live
// while it drains. Run returns what Stop returns.
//
// A kill signal, or a stop signal once the stop is under way (or once ctx is
// done and Run waits for actions to return), is an immediate stop: Run calls
// Kill once, with a *SignalError cause (Err [ErrKill]). The default Kill
// exits the process. If Kill returns, Run cancels every running action's
// context with that cause, Stop's included, waits for them, and returns the
// cause; Stop is not called if it had not started yet. Later kill signals
// are dropped.
//
// When ctx is done before Stop has started, the running actions' contexts
// are cancelled with ctx's cause, Run waits for them, and returns ctx.Err()
// without calling Stop.
//
// # Reporting
//
// Every step is an [Event] (Kind, Time, Duration, Err, then Action and
// Signal): ready, received, started, finished, coalesced, dropped. Run
// reports each, in order and from its own goroutine (never from an
// action's), as one record to [Options.Logger] and then to
// [Options.OnEvent]. A nil Logger discards
// the records; nothing goes to slog.Default() unless the program passes it.
// A record's message starts with "signal: " ("signal: upgrade started"),
// and its attributes are event (the kind), duration (when not zero), error
// (when Err is set: Warn for the cause of a stop or a kill, Error for a
// failed action), action and signal.
package signal
