package upgrader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/handoff-go/handoff/internal/control"
	"github.com/handoff-go/handoff/internal/fdpass"
	"github.com/handoff-go/handoff/listener"
)

// The new generation's side of an upgrade (N+1, started by N):
//
//	New        read the welcome N wrote in the welcome file (generation,
//	           probation, health interval, state blob); dial N's control
//	           address; hello, dial the fd channel (without a welcome file:
//	           read the welcome N sends in answer to the hello)
//	Ready      first health check → healthy; accept connections (with
//	           accept-on-healthy, else once N sent accept); hold the
//	           probation under periodic health checks → probation-passed;
//	           wait for commit: in charge
//	           (unhealthy or stopping instead, when a check fails or Stop is
//	           called; rollback from N ends it)
//	after      the channel stays open: N may forward upgrade requests; its
//	           EOF, confirmed by tableflip's pipe, is N's exit
//
// A new generation takes charge without a commit only when its parent is
// known to be gone (tableflip's pipe from it reached EOF): then nobody else
// serves. A broken channel with a live parent is a rollback.

// parentGoneWait bounds the wait for tableflip's pipe to confirm that the
// parent exited after the control channel broke: both close when the parent
// process ends, a moment apart.
const parentGoneWait = 2 * time.Second

// Reports to the state machine.
type (
	parentMsg struct {
		m   control.Message
		err error
	}
	parentExited struct{}
	probeDone    struct {
		seq   uint64
		err   error
		atEnd bool
	}
	waitTimer struct {
		seq  uint64
		kind timerKind
	}
)

type timerKind int

const (
	timerProbeTick timerKind = iota
	timerProbationEnd
	timerParentGone
)

// probeState is the probation's health checking.
type probeState struct {
	tick, end *time.Timer
	running   bool // a check runs
	endDue    bool // the window ended: the next check is the last
	failed    bool // a check failed: wait for the rollback
	passed    bool // probation-passed was sent
}

func (p *probeState) stop() {
	if p.tick != nil {
		p.tick.Stop()
	}
	if p.end != nil {
		p.end.Stop()
	}
}

// handshake introduces a new generation to its parent and reads its number,
// probation and state. It runs in New, before the state machine starts. The
// welcome is in the welcome file the parent passed at exec where it could
// write one: then the new generation waits for nothing from its parent. It
// dials the channel and sends its hello, saying it read the welcome, and
// dials the fd channel. Otherwise it reads the welcome the parent sends in
// answer to the hello.
func (m *machine) handshake() error {
	u := m.u
	welcome, welcomed := m.readWelcome()
	c, err := control.Dial(handshakeTimeout)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformedEnvironment, err)
	}
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	handOver := !u.opts.NoHandOver && control.HandOverSupported
	if err := c.Send(control.Message{Type: control.TypeHello, PID: os.Getpid(), HandOver: handOver,
		AcceptOnHealthy: speaksAcceptOnHealthy(), Welcome: welcome.Welcome}); err != nil {
		c.Close()
		return fmt.Errorf("%w: %w", ErrMalformedEnvironment, err)
	}
	var fds *fdpass.Conn
	var fdsErr error
	if handOver {
		// A parent that hands connections over listens on the fd
		// channel from before this process started; one that does not
		// refuses the dial at once.
		fds, fdsErr = control.DialFDs(handshakeTimeout)
	}
	msg := welcome
	if !welcomed {
		msg, err = c.Receive()
	}
	if err == nil && msg.Type != control.TypeWelcome {
		err = fmt.Errorf("expected %s, got %q", control.TypeWelcome, msg.Type)
	}
	if err != nil {
		c.Close()
		if fds != nil {
			fds.Close()
		}
		return fmt.Errorf("%w: control hand-shake: %w", ErrMalformedEnvironment, err)
	}
	_ = c.SetDeadline(time.Time{})
	m.parent = c
	u.gen = msg.Generation
	u.state = msg.State
	m.probation = msg.Probation
	m.acceptOnHealthy = msg.AcceptOnHealthy && speaksAcceptOnHealthy()
	m.interval = u.opts.HealthInterval
	if msg.Interval > 0 {
		m.interval = msg.Interval
	}
	switch {
	case handOver && msg.HandOver && fds != nil:
		m.fds = fds
	case handOver && msg.HandOver:
		// Without the fd channel this generation works all the same:
		// the connections drain in the parent.
		u.log.Warn("upgrader: no fd channel to the previous generation; its connections drain there", "error", fdsErr)
	case fds != nil:
		fds.Close()
	}
	return nil
}

// readWelcome reads the welcome its parent wrote for this process into the
// welcome file, if it passed one. The file, once read, is this generation's
// own for its upgrades (see writeWelcome): one memfd serves every
// generation.
func (m *machine) readWelcome() (control.Message, bool) {
	if !speaksExecWelcome() {
		return control.Message{}, false
	}
	f, err := m.u.tf.File(control.WelcomeFileName)
	if err != nil || f == nil {
		return control.Message{}, false
	}
	m.welcome = f
	msg, ok, err := control.ReadWelcome(f)
	if err != nil {
		// The welcome comes on the channel instead.
		m.u.log.Warn("upgrader: welcome file from the previous generation", "error", err)
		return control.Message{}, false
	}
	return msg, ok
}

// legacyProtocol makes a binary speak the control protocol as an older
// release did, for the tests of mixed versions: "accept" leaves out the
// accept-on-healthy step and the welcome file (set with -ldflags "-X
// github.com/handoff-go/handoff/upgrader.legacyProtocol=accept").
var legacyProtocol string

// speaksAcceptOnHealthy reports whether this binary speaks the
// accept-on-healthy step (see control.TypeHealthy).
func speaksAcceptOnHealthy() bool { return legacyProtocol != "accept" }

// speaksExecWelcome reports whether this binary passes and reads the
// welcome file (see control.TypeWelcome); the older release did not.
func speaksExecWelcome() bool { return legacyProtocol != "accept" && control.WelcomeFileSupported }

// adoptConns receives the connections the parent hands over on the fd
// channel and hands each to the listener it names (the one with the same
// address: both generations hold the same sockets), whose Accept returns
// it first. It runs until the channel ends: the parent exited or closed
// it, or Close closed it.
func (u *Upgrader) adoptConns(fc *fdpass.Conn) {
	adopted, lost := 0, 0
	for {
		header, fds, err := fc.Receive()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				u.log.Warn("upgrader: fd channel to the previous generation", "error", err)
			}
			break
		}
		ln := u.listenerFor(string(header))
		for _, fd := range fds {
			if u.adopt(ln, fd) {
				adopted++
			} else {
				lost++
			}
		}
	}
	if adopted > 0 || lost > 0 {
		level := slog.LevelInfo
		if lost > 0 {
			level = slog.LevelWarn
		}
		u.log.Log(context.Background(), level, "upgrader: connections adopted from the previous generation",
			"adopted", adopted, "lost", lost)
	}
}

// listenerFor returns the listener whose key (control.ListenerKey) is key,
// or nil.
func (u *Upgrader) listenerFor(key string) *listener.Listener {
	for _, ln := range u.Listeners() {
		if control.ListenerKey(ln.Addr()) == key {
			return ln
		}
	}
	return nil
}

// adopt makes a conn of the descriptor fd, received on the fd channel, and
// hands it to ln. It reports whether ln took it; if not, the connection is
// closed (its client sees the end of it, as after an idle close).
func (u *Upgrader) adopt(ln *listener.Listener, fd int) bool {
	f := os.NewFile(uintptr(fd), "handed-over")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return false
	}
	if ln == nil || ln.Adopt(c) != nil {
		c.Close()
		return false
	}
	return true
}

// adoptingKeys are the keys of the listeners into which this generation
// adopts connections, for probation-passed; none without an fd channel.
func (m *machine) adoptingKeys() []string {
	if m.fds == nil {
		return nil
	}
	var keys []string
	for _, ln := range m.u.Listeners() {
		keys = append(keys, control.ListenerKey(ln.Addr()))
	}
	return keys
}

// watchParent starts the goroutines that report the parent's messages and
// its exit.
func (m *machine) watchParent() {
	u := m.u
	ctx, cancel := context.WithCancel(context.Background())
	m.stopParent = cancel
	p := m.parent
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			msg, err := p.Receive()
			if !u.send(parentMsg{m: msg, err: err}) || err != nil {
				return
			}
		}
	}()
	u.goReport(func() any {
		if err := u.tf.WaitForParent(ctx); err != nil && ctx.Err() != nil {
			return nil // the machine ended first
		}
		return parentExited{}
	})
	if fc := m.fds; fc != nil {
		done := make(chan struct{})
		m.adopting = done
		u.wg.Go(func() {
			defer close(done)
			u.adoptConns(fc)
		})
	}
}

func (m *machine) sendParent(msg control.Message) {
	if m.parent == nil || m.parentGone || m.chanBroken {
		return
	}
	if err := m.parent.Send(msg); err != nil {
		m.u.log.Warn("upgrader: control channel to the previous generation", "error", err)
	}
}

// onReady: see Upgrader.Ready.
func (m *machine) onReady(r *readyReq) {
	u := m.u
	if m.phase != phaseStarting {
		r.reply <- m.refusal()
		return
	}
	if r.health != nil {
		err := fmt.Errorf("%w: %w", ErrUnhealthy, r.health)
		if m.parent != nil {
			m.sendParent(control.Message{Type: control.TypeUnhealthy, Reason: "health check failed: " + r.health.Error()})
			m.retire(false, err)
		} else {
			m.retire(true, err)
			m.finalStop()
		}
		r.reply <- err
		return
	}
	if m.parent == nil || m.parentGone {
		m.takeCharge(r)
		return
	}
	if m.chanBroken {
		// The parent lives on but its channel broke: it rolls back.
		m.ready = r
		m.retire(false, fmt.Errorf("%w: the control channel to the previous generation broke", ErrRolledBack))
		return
	}
	m.ready = r
	context.AfterFunc(r.ctx, func() { u.send(readyCtxDone{}) })
	m.sendParent(control.Message{Type: control.TypeHealthy})
	if m.acceptOnHealthy {
		// The parent knows from the welcome's exchange that this
		// generation may hold connections from here on.
		m.startProbation()
	}
}

// startProbation starts accepting and holds the probation: periodic health
// checks until the window ends.
func (m *machine) startProbation() {
	u := m.u
	u.setPaused(false)
	m.phase = phaseProbation
	u.emit(Event{Kind: EventReady, Generation: u.gen, PID: os.Getpid(), Duration: time.Since(u.created)})
	m.timerSeq++
	m.probe = probeState{
		tick: m.after(m.interval, waitTimer{seq: m.timerSeq, kind: timerProbeTick}),
		end:  m.after(m.probation, waitTimer{seq: m.timerSeq, kind: timerProbationEnd}),
	}
}

// takeCharge makes this generation the one in charge without a parent to
// commit it: a first start, or a new generation whose parent vanished.
func (m *machine) takeCharge(r *readyReq) {
	u := m.u
	start := time.Now()
	if err := m.pid.claim(); err != nil {
		if r != nil {
			m.ready = r
		}
		m.retire(true, err)
		m.finalStop()
		return
	}
	if m.parent != nil {
		// tableflip's readiness; the parent is gone, so an error writing
		// to it means nothing.
		_ = u.tf.Ready()
		u.log.Warn("upgrader: the previous generation went away during the upgrade; this generation takes charge", "generation", u.gen)
	} else if err := u.tf.Ready(); err != nil {
		u.log.Warn("upgrader: tableflip readiness", "error", err)
	}
	m.probe.stop()
	m.timerSeq++
	u.setPaused(false)
	if m.phase == phaseStarting {
		u.emit(Event{Kind: EventReady, Generation: u.gen, PID: os.Getpid(), Duration: time.Since(u.created)})
	}
	m.phase = phaseInCharge
	if m.parent != nil {
		u.sdBecameMain()
	}
	u.sdReady()
	u.emit(Event{Kind: EventCommitted, Generation: u.gen, PID: os.Getpid(), Duration: time.Since(start)})
	if r == nil {
		r, m.ready = m.ready, nil
	}
	if r != nil {
		r.reply <- nil
	}
	m.releaseWaiting()
}

func (m *machine) onReadyCtxDone() {
	if m.ready == nil || (m.phase != phaseStarting && m.phase != phaseProbation) {
		return
	}
	cause := context.Cause(m.ready.ctx)
	m.sendParent(control.Message{Type: control.TypeUnhealthy, Reason: "the new generation's Ready context ended: " + cause.Error()})
	m.retire(false, fmt.Errorf("%w: Ready: %w", ErrRolledBack, cause))
}

// onParentMsg handles a message (or the end) of the control channel.
func (m *machine) onParentMsg(r parentMsg) {
	u := m.u
	if r.err != nil {
		if m.phase == phaseInCharge || m.phase == phaseRetired || m.parentGone {
			return // the parent exits; tableflip's pipe will say so
		}
		// Before the commit: take charge only once the parent is known
		// to be gone.
		m.chanBroken = true
		m.timerSeq++
		m.after(parentGoneWait, waitTimer{seq: m.timerSeq, kind: timerParentGone})
		u.log.Warn("upgrader: control channel to the previous generation broke before the commit", "error", r.err)
		return
	}
	switch r.m.Type {
	case control.TypeAccept:
		// With AcceptOnHealthy this generation accepts already.
		if m.phase != phaseStarting || m.ready == nil {
			return
		}
		m.startProbation()
	case control.TypeCommit:
		if m.phase != phaseProbation {
			return
		}
		// The point of no return for this generation: it is in charge.
		m.probe.stop()
		m.timerSeq++
		if err := u.tf.Ready(); err != nil {
			u.log.Warn("upgrader: tableflip readiness after the commit", "error", err)
		}
		m.phase = phaseInCharge
		u.emit(Event{Kind: EventCommitted, Generation: u.gen, PID: os.Getpid(), Duration: time.Since(u.created)})
		if m.ready != nil {
			m.ready.reply <- nil
			m.ready = nil
		}
		m.releaseWaiting()
	case control.TypeRollback:
		if m.phase == phaseInCharge {
			return
		}
		if m.phase != phaseRetired {
			m.retire(false, fmt.Errorf("%w: %s", ErrRolledBack, r.m.Reason))
		}
		if m.acceptOnHealthy {
			// After the retire: this generation accepts no more, and
			// the parent has read any healthy sent before this.
			m.sendParent(control.Message{Type: control.TypeRolledBack})
		}
	case control.TypeUpgrade:
		// A request the parent received after it handed over.
		m.onUpgrade(&upgradeReq{})
	default:
		u.log.Warn("upgrader: unexpected control message from the previous generation", "type", r.m.Type)
	}
}

// onParentExited: tableflip's pipe from the parent reached EOF.
func (m *machine) onParentExited() {
	u := m.u
	m.parentGone = true
	switch m.phase {
	case phaseInCharge:
		u.sdBecameMain()
		u.emit(Event{Kind: EventParentExited, Generation: u.gen, PID: os.Getpid()})
		m.releaseWaiting()
	case phaseProbation:
		m.takeCharge(nil)
	case phaseStarting:
		if m.ready != nil {
			m.takeCharge(nil)
		}
		// Otherwise Ready takes charge when it passes its health check.
	}
}

func (m *machine) onWaitTimer(t waitTimer) {
	if t.seq != m.timerSeq {
		return
	}
	switch t.kind {
	case timerProbeTick:
		m.startProbe(false)
	case timerProbationEnd:
		m.probe.tick.Stop()
		m.probe.endDue = true
		m.startProbe(true)
	case timerParentGone:
		if m.parentGone || m.phase == phaseInCharge || m.phase == phaseRetired {
			return
		}
		m.retire(false, fmt.Errorf("%w: the control channel broke and the previous generation still runs", ErrRolledBack))
	}
}

// startProbe runs a probation health check on a goroutine.
func (m *machine) startProbe(atEnd bool) {
	if m.phase != phaseProbation || m.probe.failed || m.probe.passed {
		return
	}
	if m.probe.running {
		return // onProbeDone starts the last check if the window ended
	}
	m.probe.running = true
	u, seq, ctx := m.u, m.timerSeq, m.bg
	u.goReport(func() any { return probeDone{seq: seq, err: u.check(ctx), atEnd: atEnd} })
}

func (m *machine) onProbeDone(r probeDone) {
	if r.seq != m.timerSeq {
		return
	}
	m.probe.running = false
	if m.phase != phaseProbation || m.probe.failed {
		return
	}
	switch {
	case r.err != nil:
		m.probe.failed = true
		m.probe.stop()
		when := "during probation"
		if r.atEnd {
			when = "at the end of probation"
		}
		m.sendParent(control.Message{Type: control.TypeUnhealthy, Reason: fmt.Sprintf("health check failed %s: %v", when, r.err)})
	case r.atEnd:
		m.probe.passed = true
		m.sendParent(control.Message{Type: control.TypeProbationPassed, Listeners: m.adoptingKeys()})
	case m.probe.endDue:
		// The window ended while this check ran: one more, the last.
		m.startProbe(true)
	default:
		m.probe.tick = m.after(m.interval, waitTimer{seq: m.timerSeq, kind: timerProbeTick})
	}
}
