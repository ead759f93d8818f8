package signal

import (
	"context"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// run is Run without the subscription: it dispatches the signals read from
// sigs according to table until it is done (see Run), so tests can feed it
// from a channel. a.Kill must not be nil and o must have its defaults.
func run(ctx context.Context, a Actions, o Options, table map[os.Signal]Action, sigs <-chan os.Signal) error {
	d := &dispatcher{
		a:       a,
		o:       o,
		table:   table,
		parent:  ctx,
		results: make(chan result),
	}
	d.lanes[0] = lane{action: ActionUpgrade, fn: a.Upgrade}
	d.lanes[1] = lane{action: ActionReload, fn: a.Reload}
	return d.loop(sigs)
}

// lane runs one action (upgrade or reload) at most once at a time, with at
// most one follow-up pending.
type lane struct {
	action     Action
	fn         func(context.Context) error
	running    bool
	pending    bool
	pendingSig os.Signal // the last signal folded into the pending follow-up
}

type result struct {
	action Action
	err    error
	end    time.Time // when the action returned
	took   time.Duration
}

// dispatcher is the state machine behind Run. Only loop's goroutine touches
// its fields; actions report back over results.
type dispatcher struct {
	a       Actions
	o       Options
	table   map[os.Signal]Action
	parent  context.Context
	results chan result
	wg      sync.WaitGroup

	// runCtx is the context of upgrades and reloads: cancelled with cause
	// by a stop, or by parent.
	runCtx    context.Context
	cancelRun context.CancelCauseFunc

	lanes [2]lane

	ending    bool         // a stop began or parent is done: start no more upgrades or reloads
	ctxDone   bool         // parent is done
	stopCause *SignalError // the first stop signal's cause
	killCause error        // set once Kill has been called

	stopStarted bool
	stopRunning bool
	stopDone    bool
	stopErr     error
	cancelStop  context.CancelCauseFunc
}

func (d *dispatcher) loop(sigs <-chan os.Signal) error {
	d.runCtx, d.cancelRun = context.WithCancelCause(d.parent)
	defer d.cancelRun(nil)
	d.emit(Event{Kind: EventReady})
	done := d.parent.Done()
	for !d.settle() {
		select {
		case s, ok := <-sigs:
			if !ok { // only a test closes it; Run's is never closed
				sigs = nil
				continue
			}
			d.signal(s)
		case r := <-d.results:
			d.finish(r)
		case <-done:
			done = nil
			d.ctxDone = true
			d.ending = true
			d.dropPending()
		}
	}
	// Every action has sent its result; wait for their goroutines to end.
	d.wg.Wait()
	switch {
	case d.killCause != nil:
		return d.killCause
	case d.stopDone:
		return d.stopErr
	}
	return d.parent.Err()
}

// settle starts Stop when its time has come and reports whether Run is done.
func (d *dispatcher) settle() bool {
	if !d.ending || d.stopRunning {
		return false
	}
	for i := range d.lanes {
		if d.lanes[i].running {
			return false
		}
	}
	if d.stopCause != nil && !d.stopStarted && d.killCause == nil && !d.ctxDone {
		d.startStop()
		return false
	}
	return true
}

func (d *dispatcher) signal(s os.Signal) {
	act := d.table[s]
	d.emit(Event{Kind: EventReceived, Action: act, Signal: s})
	switch act {
	case ActionUpgrade, ActionReload:
		l := d.lane(act)
		switch {
		case d.ending:
			d.emit(Event{Kind: EventDropped, Action: act, Signal: s})
		case l.running:
			l.pending = true
			l.pendingSig = s
			d.emit(Event{Kind: EventCoalesced, Action: act, Signal: s})
		default:
			d.start(l, s)
		}
	case ActionStop:
		if d.ending {
			// A second stop signal, or one after ctx was done while Run
			// waits for actions: the user wants out now.
			d.kill(s)
			return
		}
		d.ending = true
		d.stopCause = &SignalError{Signal: s, Err: ErrStop}
		d.cancelRun(d.stopCause)
		d.dropPending()
	case ActionKill:
		d.kill(s)
	}
}

func (d *dispatcher) kill(s os.Signal) {
	if d.killCause != nil {
		d.emit(Event{Kind: EventDropped, Action: ActionKill, Signal: s})
		return
	}
	cause := &SignalError{Signal: s, Err: ErrKill}
	d.killCause = cause
	d.ending = true
	d.emit(Event{Kind: EventStarted, Action: ActionKill, Signal: s, Err: cause})
	// Kill first: with the default os.Exit, actions woken by a cancel
	// would only race with the exit.
	start := time.Now()
	d.a.Kill(cause)
	end := time.Now()
	d.emit(Event{Kind: EventFinished, Time: end, Action: ActionKill, Signal: s, Duration: end.Sub(start)})
	d.cancelRun(cause)
	if d.cancelStop != nil {
		d.cancelStop(cause)
	}
	d.dropPending()
}

func (d *dispatcher) lane(act Action) *lane {
	if act == ActionReload {
		return &d.lanes[1]
	}
	return &d.lanes[0]
}

func (d *dispatcher) start(l *lane, s os.Signal) {
	l.running = true
	d.emit(Event{Kind: EventStarted, Action: l.action, Signal: s})
	fn, ctx := l.fn, d.runCtx
	d.spawn(l.action, func() error { return fn(ctx) })
}

func (d *dispatcher) startStop() {
	var ctx context.Context
	ctx, d.cancelStop = context.WithCancelCause(d.parent)
	d.stopStarted = true
	d.stopRunning = true
	cause, stop := d.stopCause, d.a.Stop
	d.emit(Event{Kind: EventStarted, Action: ActionStop, Signal: cause.Signal, Err: cause})
	d.spawn(ActionStop, func() error { return stop(ctx, cause) })
}

// spawn runs f on a goroutine that reports to loop. Panics are not
// recovered: see Actions.
func (d *dispatcher) spawn(act Action, f func() error) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		start := time.Now()
		err := f()
		end := time.Now()
		d.results <- result{action: act, err: err, end: end, took: end.Sub(start)}
	}()
}

func (d *dispatcher) finish(r result) {
	if r.action == ActionStop {
		d.stopRunning = false
		d.stopDone = true
		d.stopErr = r.err
		d.cancelStop(nil)
		d.emit(Event{Kind: EventFinished, Time: r.end, Action: ActionStop, Err: r.err, Duration: r.took})
		return
	}
	l := d.lane(r.action)
	l.running = false
	d.emit(Event{Kind: EventFinished, Time: r.end, Action: r.action, Err: r.err, Duration: r.took})
	if l.pending && !d.ending {
		l.pending = false
		d.start(l, l.pendingSig)
	}
}

// dropPending cancels the follow-ups that a stop makes moot.
func (d *dispatcher) dropPending() {
	for i := range d.lanes {
		l := &d.lanes[i]
		if l.pending {
			l.pending = false
			d.emit(Event{Kind: EventDropped, Action: l.action, Signal: l.pendingSig})
		}
	}
}

// emit reports e, in order and synchronously, to the Logger and to
// OnEvent. Events made now get their Time here.
func (d *dispatcher) emit(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	d.log(e)
	if d.o.OnEvent != nil {
		d.o.OnEvent(e)
	}
}

// log writes e's record: message "signal: ...", then the keys every
// handoff package uses (event; duration when non-zero; error when Err is
// set: Info for a graceful stop's cause, Warn for a kill's, Error for a
// failed action), then action and signal.
func (d *dispatcher) log(e Event) {
	level, msg := slog.LevelInfo, ""
	attrs := make([]slog.Attr, 0, 9)
	attrs = append(attrs, slog.String("event", e.Kind.String()))
	if e.Duration != 0 {
		attrs = append(attrs, slog.Duration("duration", e.Duration))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.Any("error", e.Err))
		level = slog.LevelWarn
	}
	if e.Action != 0 {
		attrs = append(attrs, slog.String("action", e.Action.String()))
	}
	if e.Signal != nil {
		attrs = append(attrs, slog.String("signal", e.Signal.String()))
	}
	switch e.Kind {
	case EventReady:
		msg, level = "signal: handling signals", slog.LevelDebug
		attrs = d.tableAttrs(attrs)
	case EventReceived:
		msg = "signal: received"
	case EventStarted:
		msg = "signal: " + e.Action.String() + " started"
		if e.Action == ActionStop {
			level = slog.LevelInfo // a stop asked for is not a warning
		}
	case EventFinished:
		msg = "signal: " + e.Action.String() + " finished"
		if e.Err != nil {
			level = slog.LevelError
		}
	case EventCoalesced:
		msg = "signal: " + e.Action.String() + " in progress; coalesced into one follow-up"
	case EventDropped:
		msg, level = "signal: "+e.Action.String()+" dropped: stopping", slog.LevelWarn
	default:
		msg = "signal: " + e.Kind.String()
	}
	d.o.Logger.LogAttrs(context.Background(), level, msg, attrs...)
}

// tableAttrs appends, for each action, the sorted names of its signals.
func (d *dispatcher) tableAttrs(attrs []slog.Attr) []slog.Attr {
	for _, act := range []Action{ActionUpgrade, ActionReload, ActionStop, ActionKill} {
		var names []string
		for s, a := range d.table {
			if a == act {
				names = append(names, s.String())
			}
		}
		if len(names) > 0 {
			slices.Sort(names)
			attrs = append(attrs, slog.Any(act.String(), names))
		}
	}
	return attrs
}
