package upgrader

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/handoff-go/handoff/internal/control"
	"github.com/handoff-go/handoff/internal/fdpass"
)

// The old generation's side of an upgrade (N starts N+1):
//
//	spawn      SaveState (checked against MaxStateSize); listen on the
//	           control address; write the welcome into the welcome file;
//	           tableflip execs os.Args[0] with the fds and that file; N+1
//	           reads the welcome, connects and says hello (N sends the
//	           welcome in answer if N+1 read none)
//	init       N+1 initialises and runs its first health check → healthy,
//	           and accepts (accept-on-healthy; an older N+1 waits for
//	           accept); N pauses its own listeners, then answers accept
//	probation  N+1 serves under health checks → probation-passed
//	commit     N hands the PID file over, then sends commit: the point of
//	           no return. N drains and exits; until its drain ends it
//	           watches N+1 (successor) and takes charge again if N+1 dies.
//
// Any failure before the commit (N+1 exits, is unhealthy, stops, times out;
// Stop or the caller's context in N) is a rollback: N resumes accepting
// first, takes the PID file back, then ends N+1. One that may serve gets
// rollback, and SIGKILL if it has not exited after DrainTimeout; it answers
// rolled-back, and is killed at once, if it never said healthy (it holds no
// connection). One that cannot serve is killed at once. Upgrade returns only
// once tableflip has reaped N+1: nothing an upgrade started outlives it.

// attempt is one upgrade, from its trigger until its child is gone (after a
// rollback) or has committed.
type attempt struct {
	id      int
	callers []*upgradeReq
	start   time.Time
	gen     int
	phase   Phase
	state   []byte

	ctl      *control.Listener
	conn     *control.Conn
	pid      int
	accepted bool // the child said healthy: it may hold connections
	// acceptOnHealthy: the child accepts from its healthy on, without
	// waiting for accept, and answers a rollback with rolled-back. Until
	// that answer it may hold connections.
	acceptOnHealthy bool

	// The hand-over of connections: the fd channel's listener (nil when
	// off), the channel once the child dialled it, and the keys of the
	// child's listeners that adopt (from probation-passed).
	fdln *control.FDListener
	fds  *fdpass.Conn
	keys []string

	deadline *time.Timer
	kill     *time.Timer
	search   *time.Timer

	gone      chan struct{} // closed when the attempt ends without a commit: its child is gone
	failed    bool
	err       *UpgradeError
	committed bool
	tfDone    bool     // tableflip's Upgrade returned
	dying     bool     // tableflip killed the child; waiting for it to be gone
	exited    *tfError // the child exited; its channel is read to the end first
	chanErr   error
}

// successor is the generation this one committed to.
type successor struct {
	conn     *control.Conn
	fds      *fdpass.Conn // the fd channel, nil without a hand-over
	keys     []string     // its listeners that adopt connections
	pid      int
	gen      int
	attempt  int  // the attempt that started it: its reader reports under that id
	stopping bool // it said it stops: its end is not a death
	gone     bool
}

// Reports from the goroutines of an attempt.
type attemptReport struct {
	id   int
	kind reportKind
	// stateSaved
	state []byte
	err   error
	// hello
	conn     *control.Conn
	pid      int
	handOver bool         // both sides said HandOver: the child dials the fd channel
	fds      *fdpass.Conn // the fd channel it dialled
	// acceptOnHealthy: the hello said AcceptOnHealthy.
	acceptOnHealthy bool
	// welcomeFile: the child read its welcome from the welcome file.
	welcomeFile bool
	// childMsg
	msg control.Message
	// tfResult
	tf *tfError
}

type reportKind int

const (
	repStateSaved reportKind = iota
	repHello
	repChildMsg
	repTF
	repDeadline
	repKill
	repSearch
	repChanTimeout
	repGone
	repExitTimeout
)

// succReport is a message (or the end) of a committed successor's channel,
// or tableflip's late word on it.
type succReport struct {
	msg control.Message
	err error
	tf  bool // from tableflip: the child exited after the commit
}

// fdChanWait bounds the wait for the new generation's fd channel after the
// welcome: it dials at once.
const fdChanWait = 2 * time.Second

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// handOverSendTimeout bounds one message of the hand-over: a successor that
// does not take the connections within it gets none, and they drain here.
const handOverSendTimeout = 5 * time.Second

// goneTimeout bounds the wait for a killed child to be gone.
const goneTimeout = 5 * time.Second

// chanGrace is how long a broken control channel waits for tableflip to
// report the child's exit, which explains more than the broken channel.
const chanGrace = time.Second

// startAttempt begins an upgrade for callers: SaveState runs on a goroutine,
// then spawn. With no state to save and nothing to wait for, spawn runs at
// once.
func (m *machine) startAttempt(callers []*upgradeReq) {
	u := m.u
	m.seq++
	a := &attempt{id: m.seq, callers: callers, start: time.Now(), gen: u.gen + 1, phase: PhaseSpawn, gone: make(chan struct{})}
	m.att = a
	id := a.id
	if !u.savesState && u.parts.none() && !u.sdWaitsBeforeUpgrade() {
		m.spawn(a, attemptReport{id: id, kind: repStateSaved})
		return
	}
	u.goReport(func() any {
		// systemd reads the PID file when it reaps the ExecReload=
		// process; let it do so before this upgrade can write the file.
		u.sdBeforeUpgrade()
		var state []byte
		var err error
		if u.opts.SaveState != nil {
			if state, err = u.opts.SaveState(); err != nil {
				err = fmt.Errorf("upgrader: SaveState: %w", err)
			} else if len(state) > u.opts.MaxStateSize {
				err = fmt.Errorf("%w: %d bytes, limit %d (Options.MaxStateSize)", ErrStateTooLarge, len(state), u.opts.MaxStateSize)
			}
		}
		return attemptReport{id: id, kind: repStateSaved, state: state, err: err}
	})
}

func (m *machine) onAttemptReport(r attemptReport) {
	a := m.att
	if r.kind == repChildMsg && m.succ != nil && r.id == m.succ.attempt {
		m.onSuccReport(succReport{msg: r.msg, err: r.err})
		return
	}
	if a == nil || r.id != a.id {
		// A late report of a finished attempt: only its resources matter.
		if r.conn != nil {
			r.conn.Close()
		}
		if r.fds != nil {
			r.fds.Close()
		}
		return
	}
	switch r.kind {
	case repStateSaved:
		m.spawn(a, r)
	case repHello:
		m.onHello(a, r)
	case repChildMsg:
		m.onChildMsg(a, r)
	case repTF:
		m.onTF(a, r.tf)
	case repDeadline:
		if a.committed || a.failed {
			return
		}
		if a.conn == nil {
			m.fail(ErrTimeout, fmt.Sprintf("no contact within %s (Options.UpgradeTimeout): the new binary did not call upgrader.New", m.u.opts.UpgradeTimeout))
		} else {
			m.fail(ErrTimeout, fmt.Sprintf("not committed within %s (Options.UpgradeTimeout)", m.u.opts.UpgradeTimeout))
		}
	case repKill:
		if !a.tfDone && a.pid != 0 {
			m.u.log.Warn("upgrader: new generation did not exit after the rollback; killing it", "generation", a.gen, "target_pid", a.pid)
			kill(a.pid)
		}
	case repSearch:
		m.searchChild(a)
	case repChanTimeout:
		if !a.failed && !a.committed && a.chanErr != nil {
			m.fail(ErrUnhealthy, "control channel: "+a.chanErr.Error())
		}
	case repGone:
		m.finishAttempt(a.err)
	case repExitTimeout:
		if !a.failed && a.exited != nil {
			m.failTF(a, a.exited)
		}
	}
}

// spawn starts the new process once the state is saved.
func (m *machine) spawn(a *attempt, r attemptReport) {
	u := m.u
	if r.err == nil && (m.stopping || a.failed) {
		r.err = ErrStopped
	}
	if r.err == nil {
		a.ctl, r.err = control.Listen()
		if r.err != nil {
			r.err = fmt.Errorf("upgrader: %w", r.err)
		}
	}
	if r.err == nil && !u.opts.NoHandOver && control.HandOverSupported {
		var err error
		if a.fdln, err = control.ListenFDs(); err != nil {
			u.log.Warn("upgrader: cannot hand connections over; they will drain", "error", err)
		}
	}
	if r.err != nil {
		// Refused before anything started.
		m.finishAttempt(r.err)
		return
	}
	a.state = r.state
	id, ctl, fdln, gen := a.id, a.ctl, a.fdln, a.gen
	welcome := control.Message{Type: control.TypeWelcome, Generation: gen,
		Probation: u.opts.Probation, Interval: u.opts.HealthInterval, State: a.state,
		HandOver: fdln != nil, AcceptOnHealthy: speaksAcceptOnHealthy()}
	welcomeID := m.writeWelcome(a, welcome)
	u.sdUpgrading(a.gen)
	deadline := a.start.Add(u.opts.UpgradeTimeout)
	a.deadline = m.after(time.Until(deadline), attemptReport{id: a.id, kind: repDeadline})
	u.goReport(func() any { return attemptReport{id: id, kind: repTF, tf: tfUpgrade(u.tf)} })
	// The event once the new process is on its way: its start does not
	// wait for the event's handlers and log.
	u.emit(Event{Kind: EventTriggered, Generation: a.gen, PID: os.Getpid()})
	u.goReport(func() any {
		c, err := ctl.Accept(deadline)
		if err != nil {
			return attemptReport{id: id, kind: repHello, err: err}
		}
		pid := c.PeerPID
		_ = c.SetDeadline(deadline)
		// The control listener let only a child of this process in.
		msg, err := c.Receive()
		if err == nil && msg.Type != control.TypeHello {
			err = fmt.Errorf("expected %s, got %q", control.TypeHello, msg.Type)
		}
		if err == nil {
			switch msg.Welcome {
			case 0:
				// No welcome file, or a binary that does not read it.
				err = c.Send(welcome)
			case welcomeID:
			default:
				err = fmt.Errorf("the new process read the welcome of attempt %d, not of this one (%d)", msg.Welcome, welcomeID)
			}
		}
		if pid == 0 {
			pid = msg.PID
		}
		handOver := fdln != nil && msg.HandOver
		_ = c.SetDeadline(time.Time{})
		var fc *fdpass.Conn
		if err == nil && handOver {
			// The child dials the fd channel right after its hello;
			// one that fails to leaves its connections to drain here.
			if fc, _ = fdln.Accept(earliest(deadline, time.Now().Add(fdChanWait))); fc != nil {
				fc.SetSendTimeout(handOverSendTimeout)
			}
		}
		return attemptReport{id: id, kind: repHello, conn: c, pid: pid, err: err, handOver: handOver, fds: fc,
			acceptOnHealthy: msg.AcceptOnHealthy && speaksAcceptOnHealthy(), welcomeFile: welcomeID != 0 && msg.Welcome == welcomeID}
	})
}

// writeWelcome writes the attempt's welcome into the welcome file the new
// process inherits, and returns the id it carries; 0 if there is no welcome
// file: the welcome then goes on the channel.
func (m *machine) writeWelcome(a *attempt, w control.Message) uint64 {
	if !speaksExecWelcome() {
		return 0
	}
	w.Welcome = uint64(a.id)
	err := m.openWelcome()
	if err == nil {
		if err = control.WriteWelcome(m.welcome, w); err != nil {
			_ = control.ClearWelcome(m.welcome)
		}
	}
	if err != nil {
		m.u.log.Warn("upgrader: no welcome file; the welcome goes on the control channel", "error", err)
		return 0
	}
	return w.Welcome
}

// openWelcome makes the welcome file and registers it with tableflip, for
// the first upgrade of a generation that inherited none.
func (m *machine) openWelcome() error {
	if m.welcome != nil {
		return nil
	}
	f, err := control.NewWelcomeFile()
	if err != nil {
		return err
	}
	if err := m.u.tf.AddFile(control.WelcomeFileName, f); err != nil {
		f.Close()
		return err
	}
	m.welcome = f
	return nil
}

func (m *machine) onHello(a *attempt, r attemptReport) {
	u := m.u
	a.ctl.Close()
	if r.conn == nil {
		// Accept ended: our deadline (reported on its own) or the
		// attempt's end closed the listener.
		return
	}
	a.conn, a.pid, a.fds = r.conn, r.pid, r.fds // finishAttempt closes them
	if a.fdln != nil {
		a.fdln.Close()
	}
	if r.err != nil {
		if !a.failed {
			m.fail(ErrUnhealthy, "control hand-shake: "+r.err.Error())
		} else {
			m.endChild(a)
		}
		return
	}
	a.acceptOnHealthy = r.acceptOnHealthy
	c, id := a.conn, a.id
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			msg, err := c.Receive()
			if !u.send(attemptReport{id: id, kind: repChildMsg, msg: msg, err: err}) || err != nil {
				return
			}
		}
	}()
	if a.failed {
		// Rolled back before it introduced itself: end it now.
		m.endChild(a)
		return
	}
	a.phase = PhaseInit
	// The record says how the two generations agreed: where the welcome
	// came from, the hand-over of connections, accept-on-healthy.
	welcome := "channel"
	if r.welcomeFile {
		welcome = "file"
	}
	u.emit(Event{Kind: EventSpawned, Generation: a.gen, PID: a.pid, Duration: time.Since(a.start)},
		slog.String("welcome", welcome), slog.Bool("handover", r.handOver && r.fds != nil),
		slog.Bool("accept_on_healthy", r.acceptOnHealthy))
	u.sdSpawned(a.gen, a.pid)
	if r.handOver && r.fds == nil {
		u.log.Warn("upgrader: the new generation did not dial the fd channel; connections will drain here", "generation", a.gen, "target_pid", a.pid)
	}
}

func (m *machine) onChildMsg(a *attempt, r attemptReport) {
	u := m.u
	if a.failed {
		m.onRolledBackMsg(a, r)
		return
	}
	if r.err != nil {
		a.chanErr = r.err
		if a.exited != nil {
			// Every message the child sent before it exited has been
			// read: its exit is the reason.
			m.failTF(a, a.exited)
			return
		}
		// The child's exit (tableflip) explains more than a broken
		// channel; give it a moment.
		m.after(chanGrace, attemptReport{id: a.id, kind: repChanTimeout})
		return
	}
	switch r.msg.Type {
	case control.TypeHealthy:
		// From here the child may hold connections: it accepts already
		// (AcceptOnHealthy), or once it reads accept, which says that
		// this generation has stopped accepting: it pauses first.
		a.accepted = true
		u.setPaused(true)
		a.phase = PhaseProbation
		u.emit(Event{Kind: EventAccepting, Generation: a.gen, PID: a.pid, Duration: time.Since(a.start)})
		u.sdAccepting(a.gen, a.pid)
		if err := a.conn.Send(control.Message{Type: control.TypeAccept}); err != nil {
			m.fail(ErrUnhealthy, "control channel: "+err.Error())
			return
		}
	case control.TypeUnhealthy:
		if a.phase == PhaseProbation {
			u.emit(Event{Kind: EventProbationFailed, Generation: a.gen, PID: a.pid, Err: fmt.Errorf("%w: %s", ErrUnhealthy, r.msg.Reason)})
		}
		m.fail(ErrUnhealthy, r.msg.Reason)
	case control.TypeStopping:
		m.fail(ErrStopped, "the new generation was stopped: "+r.msg.Reason)
	case control.TypeProbationPassed:
		a.keys = r.msg.Listeners
		u.emit(Event{Kind: EventProbationPassed, Generation: a.gen, PID: a.pid, Duration: u.opts.Probation})
		m.commit(a)
	default:
		m.fail(ErrUnhealthy, fmt.Sprintf("unexpected control message %q", r.msg.Type))
	}
}

// onRolledBackMsg handles what the child of a failed attempt still says. A
// healthy sent before it read the rollback means it accepted connections:
// it drains them before it exits. Its rolled-back answer without one means
// it holds none: it is ended at once.
func (m *machine) onRolledBackMsg(a *attempt, r attemptReport) {
	if r.err != nil || a.tfDone {
		return
	}
	switch r.msg.Type {
	case control.TypeHealthy:
		a.accepted = true
	case control.TypeRolledBack:
		if !a.accepted && a.pid != 0 {
			kill(a.pid)
		}
	}
}

// commit hands over to the new generation.
func (m *machine) commit(a *attempt) {
	u := m.u
	a.phase = PhaseCommit
	if err := m.sdCommitPIDFile(a.pid); err != nil {
		m.fail(ErrPIDFile, err.Error())
		return
	}
	if err := a.conn.Send(control.Message{Type: control.TypeCommit}); err != nil {
		m.fail(ErrExited, "the commit could not be sent: "+err.Error())
		return
	}
	// The point of no return: from here no timer, context, Stop or
	// rollback acts on this upgrade. If the new generation dies now, that
	// is a successor's death (onSuccReport), not a rollback.
	a.committed = true
	a.deadline.Stop()
	m.phase = phaseHandedOver
	m.succ = &successor{conn: a.conn, fds: a.fds, keys: a.keys, pid: a.pid, gen: a.gen, attempt: a.id}
	a.fds = nil
	u.emit(Event{Kind: EventCommitted, Generation: a.gen, PID: a.pid, Duration: time.Since(a.start)})
	u.sdHandedOver(a.gen, a.pid)
	u.closeExit()
	for _, r := range a.callers {
		m.reply(r, nil)
	}
	a.callers = nil
	if follow := m.follow; len(follow) > 0 {
		m.follow = nil
		m.forward(follow) // one follow-up, however many asked for it
	}
	m.releaseWaiting()
	if a.tfDone {
		m.att = nil
	}
}

// forward hands upgrade requests to the committed successor as one request:
// it carries it out once this generation has exited.
func (m *machine) forward(rs []*upgradeReq) {
	s := m.succ
	var err error
	switch {
	case s == nil || s.gone || s.stopping:
		err = fmt.Errorf("%w: the new generation is gone or stopping", ErrUpgraded)
	default:
		if serr := s.conn.Send(control.Message{Type: control.TypeUpgrade}); serr != nil {
			err = fmt.Errorf("%w: forwarding the request to generation %d: %w", ErrUpgraded, s.gen, serr)
		} else {
			m.u.emit(Event{Kind: EventForwarded, Generation: s.gen, PID: s.pid})
		}
	}
	for _, r := range rs {
		m.reply(r, err)
	}
}

// onTF handles tableflip's end of the upgrade.
func (m *machine) onTF(a *attempt, e *tfError) {
	a.tfDone = true
	if e != nil && (e.kind == tfTerminating || e.kind == tfTimedOut) && !a.committed {
		// tableflip sent SIGKILL and returned: the child may still hold
		// the sockets for a moment. The attempt ends when it is gone.
		a.dying = true
		if !a.failed {
			m.failTF(a, e)
		}
		pid := a.pid
		if pid == 0 {
			pid = findChild()
		}
		id := a.id
		m.u.goReport(func() any {
			if pid > 0 {
				waitGone(pid, goneTimeout)
			}
			return attemptReport{id: id, kind: repGone}
		})
		return
	}
	switch {
	case a.committed:
		m.att = nil
		if e != nil {
			m.onSuccReport(succReport{tf: true, err: e})
		}
	case e == nil && !a.failed:
		// tableflip saw readiness without our commit: a binary that
		// calls tableflip's Ready itself. tableflip has handed over and
		// cannot go back, so neither can we.
		m.u.log.Error("upgrader: new generation signalled readiness before the commit; it is in charge", "generation", a.gen, "target_pid", a.pid)
		if a.conn == nil {
			m.finishAttempt(nil)
			m.phase = phaseHandedOver
			m.u.closeExit()
			return
		}
		m.commit(a)
	case a.failed:
		m.finishAttempt(a.err)
	case e.kind == tfExited && a.chanErr == nil:
		// A child that said why it gives up (unhealthy, stopping) and
		// exited: tableflip may report the exit before the control
		// channel delivers the reason, or even before the hello (the
		// child reads its welcome at exec and waits for nothing from
		// this process). Read the channel to its end first; a child that
		// never connected is reported after the grace.
		a.exited = e
		m.after(chanGrace, attemptReport{id: a.id, kind: repExitTimeout})
	default:
		m.failTF(a, e)
	}
}

// failTF turns tableflip's report of a failed upgrade into the rollback.
func (m *machine) failTF(a *attempt, e *tfError) {
	switch e.kind {
	case tfExited:
		m.rollback(&UpgradeError{Status: e.status, ExitCode: e.code, Err: fmt.Errorf("%w with %s", ErrExited, e.status)})
	case tfTimedOut:
		m.fail(ErrTimeout, fmt.Sprintf("no contact within %s", m.u.opts.UpgradeTimeout+m.u.opts.DrainTimeout))
	case tfTerminating:
		m.fail(ErrStopped, "")
	case tfCannotStart:
		m.fail(ErrSpawn, e.Error())
	default:
		m.fail(ErrSpawn, e.Error())
	}
}

// fail rolls the attempt back: this generation serves on, and the child is
// ended. Upgrade is answered when tableflip has reaped the child.
func (m *machine) fail(sentinel error, detail string) {
	err := sentinel
	if detail != "" {
		err = fmt.Errorf("%w: %s", sentinel, detail)
	}
	m.rollback(&UpgradeError{ExitCode: -1, Err: err})
}

// rollback is fail with the error built: its Err (and, for an exit, Status
// and ExitCode) set; the rest is filled in here. The error is complete
// before anyone sees it.
func (m *machine) rollback(ue *UpgradeError) {
	a, u := m.att, m.u
	if a == nil || a.failed || a.committed {
		return
	}
	a.failed = true
	ue.Generation, ue.PID, ue.Phase = a.gen, a.pid, a.phase
	a.err = ue
	if a.deadline != nil {
		a.deadline.Stop()
	}
	u.setPaused(m.phase != phaseInCharge)
	if err := m.pid.reclaim(); err != nil {
		u.log.Error("upgrader: take the PID file back", "error", err)
	}
	if !m.stopping {
		u.sdRolledBack(a.gen, a.err)
	}
	u.emit(Event{Kind: EventRolledBack, Generation: a.gen, PID: a.pid, Duration: time.Since(a.start), Err: a.err})
	if a.dying {
		return // finished once the child is gone (onTF)
	}
	if a.tfDone {
		m.finishAttempt(a.err)
		return
	}
	m.endChild(a)
}

// endChild makes sure the child of a failed attempt ends: gracefully if it
// may hold connections, at once otherwise.
func (m *machine) endChild(a *attempt) {
	u := m.u
	if a.tfDone {
		return
	}
	if a.conn != nil {
		_ = a.conn.Send(control.Message{Type: control.TypeRollback, Reason: a.err.Error()})
		if a.accepted || a.acceptOnHealthy {
			// It drains and exits, or answers at once if it holds
			// nothing (onRolledBackMsg); it is killed if it has not
			// gone by the drain timeout.
			if a.kill == nil {
				a.kill = m.after(u.opts.DrainTimeout, attemptReport{id: a.id, kind: repKill})
			}
			return
		}
		if a.pid != 0 {
			kill(a.pid)
			return
		}
	}
	// The child never introduced itself.
	if m.stopping {
		u.tf.Stop() // kills it; the service stops anyway
		return
	}
	m.searchChild(a)
}

// searchChild looks for the child of an attempt that never introduced itself
// and kills it; it looks again every searchEvery until tableflip reports it
// gone (tableflip's own timeout kills it where it cannot be found).
func (m *machine) searchChild(a *attempt) {
	if a.tfDone || a.conn != nil {
		return
	}
	if pid := findChild(); pid > 0 {
		a.pid = pid
		kill(pid)
		return
	}
	if canFindChild {
		a.search = m.after(searchEvery, attemptReport{id: a.id, kind: repSearch})
	}
}

// searchEvery is the period of searchChild. There is no event for a process
// being started by another goroutine's fork, so it polls.
const searchEvery = 20 * time.Millisecond

// finishAttempt ends an attempt that did not commit: its child is gone.
func (m *machine) finishAttempt(err error) {
	a := m.att
	m.att = nil
	close(a.gone)
	for _, t := range []*time.Timer{a.deadline, a.kill, a.search} {
		if t != nil {
			t.Stop()
		}
	}
	if a.ctl != nil {
		a.ctl.Close()
	}
	if a.conn != nil {
		a.conn.Close()
	}
	if a.fdln != nil {
		a.fdln.Close()
	}
	if a.fds != nil {
		a.fds.Close()
	}
	if err != nil && m.welcome != nil {
		// Nobody is to read the welcome of an attempt that failed.
		_ = control.ClearWelcome(m.welcome)
	}
	for _, r := range a.callers {
		m.reply(r, err)
	}
	if m.stopping {
		if m.phase == phaseInCharge {
			m.finalStop()
		}
		return
	}
	if follow := m.follow; len(follow) > 0 {
		// The follow-up runs after a failure too: the request may bring
		// the fixed binary.
		m.follow = nil
		m.startAttempt(follow)
	}
}

// onSuccReport watches the committed successor until this generation's drain
// ends.
func (m *machine) onSuccReport(r succReport) {
	s, u := m.succ, m.u
	if s == nil || s.gone {
		return
	}
	if r.err == nil {
		switch r.msg.Type {
		case control.TypeStopping:
			s.stopping = true
			if s.fds != nil {
				// It stops: a hand-over in progress ends, the rest drains
				// here; it adopts what it received until this EOF.
				s.fds.Close()
			}
		default:
			u.log.Warn("upgrader: unexpected control message from the new generation", "type", r.msg.Type)
		}
		return
	}
	s.gone = true
	if s.fds != nil {
		s.fds.Close() // a hand-over in progress fails at once
	}
	why := fmt.Errorf("generation %d (pid %d) died: %v", s.gen, s.pid, r.err)
	if s.stopping {
		why = fmt.Errorf("generation %d (pid %d) was stopped", s.gen, s.pid)
	}
	u.emit(Event{Kind: EventSuccessorExited, Generation: s.gen, PID: s.pid, Err: why})
	if s.stopping {
		// The service ends with this generation's drain: the file must not
		// name a process that is gone. (It was stopped, perhaps before it
		// saw the commit, so it did not remove the file itself.)
		m.pid.releaseFor(s.pid)
		return
	}
	if m.phase != phaseHandedOver || m.retired || m.stopping {
		u.log.Error("upgrader: the new generation died and this one no longer serves: nothing serves now", "generation", s.gen, "target_pid", s.pid)
		return
	}
	m.reclaim(why)
}

// reclaim puts this generation back in charge after its successor died
// while it drained.
func (m *machine) reclaim(why error) {
	u := m.u
	m.phase = phaseInCharge
	m.noUpgrade = fmt.Errorf("%w: this generation took charge again after its successor died, and cannot start another one; restart the service to upgrade", ErrUpgraded)
	u.mu.Lock()
	u.paused = false
	for _, ln := range u.listeners {
		ln.Undrain()
		ln.Resume()
	}
	u.exitC = make(chan struct{})
	u.mu.Unlock()
	if err := m.pid.reclaim(); err != nil {
		u.log.Error("upgrader: take the PID file back", "error", err)
	}
	// The drain in progress (or the next one) is called off.
	m.reclaimed = true
	if m.drainCancel != nil {
		m.drainCancel(ErrReclaimed)
	}
	u.sdReclaimed()
	u.emit(Event{Kind: EventReclaimed, Generation: u.gen, PID: os.Getpid(), Err: why})
}
