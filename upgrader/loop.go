package upgrader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/handoff-go/handoff/internal/control"
	"github.com/handoff-go/handoff/internal/fdpass"
)

// The state machine of a generation. One goroutine (run) owns every field of
// machine; the methods of Upgrader send it requests with reply channels, and
// the goroutines it starts (the tableflip upgrade, control-channel readers,
// health checks, timers) send it reports. Nothing it does blocks for long:
// user code (HealthCheck, SaveState) and waits run on goroutines that report
// back.
//
// The child side of the upgrade protocol is in child.go, the parent side in
// parent.go, the drain in drain.go.

// phase is where this generation is in its life.
type phase int

const (
	// phaseStarting: before Ready has passed; a new generation also until
	// its parent lets it accept.
	phaseStarting phase = iota
	// phaseProbation: a new generation that accepts and waits for the
	// commit.
	phaseProbation
	// phaseInCharge: this generation is in charge of the service.
	phaseInCharge
	// phaseHandedOver: a successor committed; this generation drains.
	phaseHandedOver
	// phaseRetired: stopped, rolled back, or failed its start; it drains
	// and exits.
	phaseRetired
)

// Requests from the methods of Upgrader.
type (
	readyReq struct {
		ctx    context.Context
		health error // the first health check's result
		reply  chan error
	}
	upgradeReq struct {
		ctx   context.Context // nil for a request forwarded by the parent
		reply chan error      // nil for a request forwarded by the parent
		stop  func() bool     // stops the ctx watcher
	}
	stopReq   struct{ done chan struct{} }
	retireReq struct{ done chan struct{} }
	closeReq  struct{ reply chan error }
	drainReq  struct {
		reply  chan drainPlan
		cancel context.CancelCauseFunc // ends the drain's wait for HTTP/2 connections
	}
	drainEnd struct {
		res   drainResult
		reply chan bool // whether this generation took charge again meanwhile
	}
	// upgradeCtxDone: the context of a waiting Upgrade call ended.
	upgradeCtxDone struct{ req *upgradeReq }
	// readyCtxDone: the context of the pending Ready call ended.
	readyCtxDone struct{}
)

type machine struct {
	u   *Upgrader
	pid pidFile

	phase     phase
	final     bool  // phaseRetired: this generation owned the service when it stopped
	stopping  bool  // Stop was called
	retired   bool  // Retire was called or the drain ended: no taking charge again
	retireErr error // phaseRetired: what Ready and Upgrade return
	noUpgrade error // set once this generation cannot start another one

	// The new generation's side (child.go).
	ready      *readyReq     // the pending Ready call
	parent     *control.Conn // the channel to the parent; nil on a first start
	fds        *fdpass.Conn  // the fd channel from the parent, if it hands connections over
	adopting   chan struct{} // closed once the fd channel ended: nothing more to adopt
	parentGone bool          // the parent exited (tableflip's pipe said so)
	chanBroken bool          // the control channel broke before the commit
	// acceptOnHealthy: the parent speaks the accept-on-healthy step (see
	// control.TypeHealthy): accept on healthy, answer rollback.
	acceptOnHealthy bool
	probation       time.Duration // to hold, from the parent
	interval        time.Duration
	probe           probeState
	timerSeq        uint64 // identifies the timers of the current wait
	stopParent      context.CancelFunc
	// welcome is the welcome file (control.WelcomeFileName), inherited
	// from the parent or made for the first upgrade; nil if none.
	welcome *os.File

	// The old generation's side (parent.go).
	att     *attempt      // the upgrade in progress (until its child is gone)
	waiting []*upgradeReq // calls waiting for this generation to take charge
	follow  []*upgradeReq // calls joined to the follow-up of att
	succ    *successor    // after a commit
	seq     int           // attempt numbers

	drainCancel context.CancelCauseFunc // set while Drain runs
	reclaimed   bool                    // this generation took charge again during the drain
	closing     *closeReq
	bg          context.Context // cancelled when the machine ends
	cancelBG    context.CancelFunc
}

func (m *machine) run() {
	u := m.u
	m.bg, m.cancelBG = context.WithCancel(context.Background())
	defer close(u.loopDone)
	defer m.cancelBG()
	for {
		req := <-u.in
		m.handle(req)
		if m.closing != nil && m.att == nil {
			m.close()
			return
		}
	}
}

func (m *machine) handle(req any) {
	switch r := req.(type) {
	case *readyReq:
		m.onReady(r)
	case readyCtxDone:
		m.onReadyCtxDone()
	case *upgradeReq:
		m.onUpgrade(r)
	case upgradeCtxDone:
		m.onUpgradeCtxDone(r.req)
	case *stopReq:
		m.onStop()
		close(r.done)
	case *retireReq:
		m.retired = true
		close(r.done)
	case *drainReq:
		r.reply <- m.onDrainStart(r)
	case drainEnd:
		r.reply <- m.onDrainEnd(r)
	case *closeReq:
		m.closing = r
	// child.go
	case parentMsg:
		m.onParentMsg(r)
	case parentExited:
		m.onParentExited()
	case probeDone:
		m.onProbeDone(r)
	case waitTimer:
		m.onWaitTimer(r)
	// parent.go
	case attemptReport:
		m.onAttemptReport(r)
	case succReport:
		m.onSuccReport(r)
	default:
		panic(fmt.Sprintf("upgrader: unknown request %T", req))
	}
}

// onUpgrade starts an upgrade, joins the one running, forwards the request,
// or makes it wait until this generation is in charge.
func (m *machine) onUpgrade(r *upgradeReq) {
	if !m.watchCtx(r) {
		return
	}
	switch {
	case m.phase == phaseRetired || m.stopping:
		m.reply(r, m.refusal())
	case m.noUpgrade != nil:
		m.reply(r, m.noUpgrade)
	case m.phase == phaseHandedOver:
		m.forward([]*upgradeReq{r})
	case m.att != nil:
		m.follow = append(m.follow, r)
	case !m.canStart():
		// Not in charge yet, or in charge while the parent drains:
		// tableflip starts the next generation only once the parent has
		// exited.
		m.waiting = append(m.waiting, r)
	default:
		m.startAttempt([]*upgradeReq{r})
	}
}

// canStart reports whether an upgrade can start now.
func (m *machine) canStart() bool {
	return m.phase == phaseInCharge && !m.stopping && m.noUpgrade == nil && m.att == nil &&
		(m.parentGone || m.parent == nil && !m.u.tf.HasParent())
}

// watchCtx answers a request whose context has ended, or arranges to hear
// when it does; false when it answered.
func (m *machine) watchCtx(r *upgradeReq) bool {
	if r.ctx == nil {
		return true
	}
	if err := context.Cause(r.ctx); err != nil {
		m.reply(r, fmt.Errorf("%w: %w", ErrCanceled, err))
		return false
	}
	r.stop = context.AfterFunc(r.ctx, func() { m.u.send(upgradeCtxDone{req: r}) })
	return true
}

// refusal is what a retired or stopping generation answers.
func (m *machine) refusal() error {
	if m.retireErr != nil && errors.Is(m.retireErr, ErrRolledBack) {
		return m.retireErr
	}
	return ErrStopped
}

func (m *machine) onUpgradeCtxDone(r *upgradeReq) {
	cause := fmt.Errorf("%w: %w", ErrCanceled, context.Cause(r.ctx))
	if i := indexReq(m.waiting, r); i >= 0 {
		m.waiting = append(m.waiting[:i], m.waiting[i+1:]...)
		m.reply(r, cause)
		return
	}
	if i := indexReq(m.follow, r); i >= 0 {
		m.follow = append(m.follow[:i], m.follow[i+1:]...)
		m.reply(r, cause)
		return
	}
	if a := m.att; a != nil && !a.committed && !a.failed {
		if i := indexReq(a.callers, r); i >= 0 {
			if len(a.callers) > 1 {
				// Others still want it: this caller stops waiting.
				a.callers = append(a.callers[:i], a.callers[i+1:]...)
				m.reply(r, cause)
				return
			}
			// The only caller gave up: roll back, and answer it when the
			// new process is gone.
			m.fail(ErrCanceled, context.Cause(r.ctx).Error())
		}
	}
}

func indexReq(rs []*upgradeReq, r *upgradeReq) int {
	for i, x := range rs {
		if x == r {
			return i
		}
	}
	return -1
}

// reply answers an Upgrade call (nothing for a forwarded request, whose
// result is logged).
func (m *machine) reply(r *upgradeReq, err error) {
	if r.stop != nil {
		r.stop()
	}
	if r.reply != nil {
		r.reply <- err
		return
	}
	if err != nil {
		m.u.log.Error("upgrader: upgrade requested by the previous generation failed", "error", err)
	}
}

// releaseWaiting re-examines the calls that waited for this generation to
// take charge (or to be refused). If an upgrade can start, the calls that
// waited share one: they all came before it starts, on the binary there
// then.
func (m *machine) releaseWaiting() {
	w := m.waiting
	m.waiting = nil
	var start []*upgradeReq
	for _, r := range w {
		if r.stop != nil {
			r.stop() // a fresh watcher is installed below
			r.stop = nil
		}
		if m.canStart() {
			if m.watchCtx(r) {
				start = append(start, r)
			}
			continue
		}
		m.onUpgrade(r)
	}
	if len(start) > 0 {
		m.startAttempt(start)
	}
}

// onStop: see Upgrader.Stop.
func (m *machine) onStop() {
	if m.stopping {
		return
	}
	m.stopping = true
	m.reclaimed = false // a reclaim before this stop no longer calls a drain off
	u := m.u
	close(u.stopped)
	switch m.phase {
	case phaseInCharge:
		u.emit(Event{Kind: EventStopping, Generation: u.gen, PID: os.Getpid()})
		u.sdStopping()
		// A parent still draining must not take this stop for a death.
		m.sendParent(control.Message{Type: control.TypeStopping, Reason: "stopped"})
		if a := m.att; a != nil && !a.committed {
			// The final stop waits for the new process to be gone
			// (finishAttempt); this generation drains meanwhile.
			if !a.failed {
				m.fail(ErrStopped, "")
			} else if a.conn == nil && !a.tfDone {
				u.tf.Stop() // a rolled-back child that never spoke: now
			}
		} else {
			m.finalStop()
		}
		u.closeExit()
	case phaseStarting, phaseProbation:
		if m.parent == nil || m.parentGone {
			// A first start (or an orphan) that never served: it owns
			// the sockets all the same.
			m.retire(true, ErrStopped)
			m.finalStop()
			return
		}
		m.sendParent(control.Message{Type: control.TypeStopping, Reason: "stopped before the commit"})
		m.retire(false, ErrStopped)
	case phaseHandedOver, phaseRetired:
		// The successor serves, or this generation already ends.
	}
	m.releaseWaiting()
	for _, r := range m.follow {
		m.reply(r, ErrStopped)
	}
	m.follow = nil
}

// finalStop ends the service of a generation in charge: tableflip stops (no
// more upgrades; it kills a child whose pid was never learnt), socket files
// and the PID file go. Connections are left to Drain.
func (m *machine) finalStop() {
	m.u.tf.Stop()
	m.u.removeSocketFiles()
	m.pid.release()
	m.phase, m.final = phaseRetired, true
	if m.retireErr == nil {
		m.retireErr = ErrStopped
	}
}

// retire ends a generation that is not (or no longer) in charge of the
// service, or a first one that never was: it answers a pending Ready with
// err, stops accepting and closes Exit. A new generation that never committed
// also closes its listeners at once: the generation in charge holds the same
// sockets, and this process must not keep them after its last connection.
func (m *machine) retire(final bool, err error) {
	m.phase, m.final, m.retireErr = phaseRetired, final, err
	m.probe.stop()
	m.timerSeq++
	u := m.u
	u.setPaused(true)
	if !final {
		for _, ln := range u.Listeners() {
			_ = ln.Close()
		}
	}
	if m.ready != nil {
		m.ready.reply <- err
		m.ready = nil
	}
	u.closeExit()
	m.releaseWaiting()
}

// onDrainStart records that Drain began and tells it how: a generation in
// charge (or retired from being in charge) is the last owner of its sockets.
func (m *machine) onDrainStart(r *drainReq) drainPlan {
	if m.reclaimed {
		// Taken charge again between the commit and this drain.
		m.reclaimed = false
		return drainPlan{reclaimed: true}
	}
	if m.phase == phaseInCharge && !m.stopping {
		// Draining the generation in charge stops the service.
		m.onStop()
	}
	m.drainCancel = r.cancel
	m.reclaimed = false
	plan := drainPlan{final: m.final || m.phase == phaseInCharge}
	if m.att != nil && !m.att.committed {
		plan.childGone = m.att.gone
	}
	if s := m.succ; m.phase == phaseHandedOver && s != nil && !s.gone && !s.stopping && s.fds != nil {
		plan.handOver, plan.keys = s.fds, s.keys
	}
	if plan.final && m.adopting != nil {
		plan.adopting = m.adopting
	}
	m.u.emit(Event{Kind: EventDrainStarted, Generation: m.u.gen, PID: os.Getpid()})
	return plan
}

// onDrainEnd reports whether the drain was called off by a reclaim; otherwise
// the drain is over, and with it the watch over the successor.
func (m *machine) onDrainEnd(r drainEnd) bool {
	m.drainCancel = nil
	if m.reclaimed {
		m.reclaimed = false
		return true
	}
	u := m.u
	m.retired = true
	u.emit(Event{Kind: EventDrainFinished, Generation: u.gen, PID: os.Getpid(), Duration: r.res.stats.Duration, Drain: r.res.stats, Err: r.res.err})
	if m.phase == phaseHandedOver {
		if err := m.sdFinalHandOver(); err != nil {
			u.log.Error("upgrader: hand the PID file to the new generation", "error", err)
		}
	}
	return false
}

// close answers Close once no upgrade is left in progress.
func (m *machine) close() {
	var err error
	if m.phase == phaseHandedOver {
		err = m.sdFinalHandOver()
	}
	if m.parent != nil {
		m.parent.Close()
	}
	if m.fds != nil {
		m.fds.Close()
	}
	if m.succ != nil {
		m.succ.conn.Close()
		if m.succ.fds != nil {
			m.succ.fds.Close()
		}
	}
	if m.stopParent != nil {
		m.stopParent()
	}
	m.probe.stop()
	if m.welcome != nil {
		m.welcome.Close()
	}
	m.closing.reply <- err
}

// after sends msg to the state machine after d, unless it has ended.
func (m *machine) after(d time.Duration, msg any) *time.Timer {
	u := m.u
	return time.AfterFunc(d, func() {
		select {
		case u.in <- msg:
		case <-u.loopDone:
		}
	})
}
