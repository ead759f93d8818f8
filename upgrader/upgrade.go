package upgrader

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-go/handoff/internal/control"
)

// Upgrade starts the binary at os.Args[0] as the next generation, hands it
// every socket and file and the state blob, and waits until it has committed
// or failed. It returns nil once the new generation is in charge (Exit is
// then closed: drain and exit). Any other outcome leaves this generation
// serving, accepting again, able to upgrade again, and returns an
// *UpgradeError (exited with its status, timed out, unhealthy, stopped,
// canceled) or a refusal: ErrInProgress while another upgrade runs,
// ErrNotReady before Ready, ErrStateTooLarge, ErrStopped, ErrUpgraded.
//
// If this generation's own parent is still draining, Upgrade first waits for
// it to exit, bounded by ctx. Cancelling ctx during the upgrade rolls it back.
func (u *Upgrader) Upgrade(ctx context.Context) error {
	if !u.busy.CompareAndSwap(false, true) {
		return ErrInProgress
	}
	defer u.busy.Store(false)

	u.mu.Lock()
	committed, upgraded := u.committed, u.upgraded
	u.mu.Unlock()
	select {
	case <-u.stopC:
		return ErrStopped
	default:
	}
	switch {
	case upgraded:
		return ErrUpgraded
	case !committed:
		return ErrNotReady
	}

	if u.tf.HasParent() {
		if err := u.tf.WaitForParent(ctx); err != nil && ctx.Err() != nil {
			return fmt.Errorf("upgrader: waiting for the previous generation to exit: %w", context.Cause(ctx))
		}
	}

	var state []byte
	if u.opts.SaveState != nil {
		var err error
		if state, err = u.opts.SaveState(); err != nil {
			return fmt.Errorf("upgrader: SaveState: %w", err)
		}
		if len(state) > u.opts.MaxStateSize {
			return fmt.Errorf("%w: %d bytes, limit %d (Options.MaxStateSize)", ErrStateTooLarge, len(state), u.opts.MaxStateSize)
		}
	}

	err := u.upgrade(ctx, state)
	if err == nil {
		u.mu.Lock()
		u.upgraded = true
		u.mu.Unlock()
		u.closeExit()
	}
	return err
}

// attempt is the parent's view of one upgrade.
type attempt struct {
	u       *Upgrader
	start   time.Time
	gen     int
	pid     int
	phase   string
	conn    *control.Conn
	serving bool // the child accepts connections and this process is paused
}

func (a *attempt) fail(sentinel error, detail string) *UpgradeError {
	err := sentinel
	if detail != "" {
		err = fmt.Errorf("%w: %s", sentinel, detail)
	}
	return &UpgradeError{Generation: a.gen, PID: a.pid, Phase: a.phase, ExitCode: -1, Err: err}
}

type accepted struct {
	conn *control.Conn
	msg  control.Message
	err  error
}

func (u *Upgrader) upgrade(ctx context.Context, state []byte) error {
	a := &attempt{u: u, start: time.Now(), gen: u.gen + 1, phase: "spawn"}
	u.emit(Event{Kind: EventTriggered, Generation: a.gen, PID: os.Getpid()})
	u.sdUpgrading(a.gen)
	deadline := a.start.Add(u.opts.UpgradeTimeout)

	ln, err := control.Listen()
	if err != nil {
		return fmt.Errorf("upgrader: %w", err)
	}
	defer ln.Close()

	tfDone := make(chan error, 1)
	go func() { tfDone <- u.tfUpgrade() }()

	// The child introduces itself; then its messages arrive on msgs.
	acc := make(chan accepted, 1)
	msgs := make(chan accepted, 8)
	stopReading := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		c, err := ln.Accept(deadline)
		if err != nil {
			acc <- accepted{err: err}
			return
		}
		_ = c.SetDeadline(deadline)
		m, err := c.Receive()
		if err == nil && m.Type != control.TypeHello {
			err = fmt.Errorf("expected %s, got %q", control.TypeHello, m.Type)
		}
		if err == nil {
			err = c.Send(control.Message{Type: control.TypeWelcome, Generation: a.gen,
				Probation: u.opts.Probation, Interval: u.opts.HealthInterval, State: state})
		}
		_ = c.SetDeadline(time.Time{})
		acc <- accepted{conn: c, msg: m, err: err}
		if err != nil {
			c.Close()
			return
		}
		for {
			m, err := c.Receive()
			select {
			case msgs <- accepted{msg: m, err: err}:
			case <-stopReading:
				return
			}
			if err != nil {
				return
			}
		}
	}()

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()

	// wait runs the state machine until the child commits or fails.
	result := func() error {
		for {
			select {
			case r := <-acc:
				if r.err != nil {
					// The child's exit (tfDone) explains more than a
					// broken control channel; give it a moment.
					return a.afterChannelError(tfDone, r.err)
				}
				a.conn, a.pid, a.phase = r.conn, r.msg.PID, "init"
				if r.conn.PeerPID != 0 {
					a.pid = r.conn.PeerPID
				}
				u.emit(Event{Kind: EventSpawned, Generation: a.gen, PID: a.pid, Duration: time.Since(a.start)})

			case r := <-msgs:
				if r.err != nil {
					return a.afterChannelError(tfDone, r.err)
				}
				switch r.msg.Type {
				case control.TypeAccepting:
					u.setPaused(true)
					a.serving, a.phase = true, "probation"
					u.emit(Event{Kind: EventAccepting, Generation: a.gen, PID: a.pid, Duration: time.Since(a.start)})
				case control.TypeUnhealthy:
					e := a.fail(ErrUnhealthy, r.msg.Reason)
					if a.phase == "probation" {
						u.emit(Event{Kind: EventProbationFailed, Generation: a.gen, PID: a.pid, Err: e})
					}
					return e
				case control.TypeProbationPassed:
					u.emit(Event{Kind: EventProbationPassed, Generation: a.gen, PID: a.pid, Duration: u.opts.Probation})
					a.phase = "commit"
					if err := a.conn.Send(control.Message{Type: control.TypeCommit}); err != nil {
						return a.afterChannelError(tfDone, err)
					}
				default:
					return a.fail(ErrUnhealthy, fmt.Sprintf("unexpected control message %q", r.msg.Type))
				}

			case err := <-tfDone:
				tfDone <- err // keep it for the clean-up below
				if err == nil {
					return nil
				}
				return a.exited(err)

			case <-timer.C:
				return a.fail(ErrTimeout, fmt.Sprintf("not committed within %s (Options.UpgradeTimeout)", u.opts.UpgradeTimeout))

			case <-ctx.Done():
				return a.fail(ErrCanceled, context.Cause(ctx).Error())

			case <-u.stopC:
				return a.fail(ErrStopped, "")
			}
		}
	}()

	if result == nil {
		u.sdHandedOver(a.gen, a.pid)
		u.emit(Event{Kind: EventCommitted, Generation: a.gen, PID: a.pid, Duration: time.Since(a.start)})
	} else {
		a.rollback(result, tfDone)
	}
	// Stop the reader: no more connections, and close the child's channel
	// (the one we saw, or one it handed over after we stopped looking).
	ln.Close()
	if a.conn != nil {
		a.conn.Close()
	}
	close(stopReading)
	if r := <-accOrNil(acc, readerDone); r.conn != nil {
		r.conn.Close()
	}
	<-readerDone
	return result
}

// accOrNil returns acc's pending value, or a zero value once the reader has
// finished without sending one.
func accOrNil(acc chan accepted, done chan struct{}) chan accepted {
	out := make(chan accepted, 1)
	select {
	case r := <-acc:
		out <- r
	case <-done:
		select {
		case r := <-acc:
			out <- r
		default:
			out <- accepted{}
		}
	}
	return out
}

// afterChannelError turns a broken control channel into the child's exit
// status when the child exited.
func (a *attempt) afterChannelError(tfDone chan error, cerr error) error {
	select {
	case err := <-tfDone:
		tfDone <- err
		if err == nil {
			// tableflip saw readiness without our commit: cannot happen with
			// our child; treat it as committed all the same.
			return nil
		}
		return a.exited(err)
	case <-time.After(time.Second):
	}
	if strings.Contains(cerr.Error(), "i/o timeout") {
		return a.fail(ErrTimeout, fmt.Sprintf("no contact within %s (Options.UpgradeTimeout)", a.u.opts.UpgradeTimeout))
	}
	return a.fail(ErrUnhealthy, "control channel: "+cerr.Error())
}

// tfParentAlive is tableflip's refusal to upgrade before it has seen its
// own parent exit.
const tfParentAlive = "parent hasn't exited"

// tfUpgrade calls tableflip's Upgrade. tableflip reports its parent's exit
// to WaitForParent a moment before its own state machine records it, and
// refuses an upgrade in between, without starting anything; that refusal
// is retried, bounded. There is no event for the state machine catching
// up, so the retry sleeps.
func (u *Upgrader) tfUpgrade() error {
	for i := 0; ; i++ {
		err := u.tf.Upgrade()
		if err == nil || err.Error() != tfParentAlive || i == 200 {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exited maps tableflip's error for a failed upgrade to our error. tableflip
// formats its errors with %s, so only their text is left to go by.
func (a *attempt) exited(err error) error {
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "new child ") && strings.HasSuffix(msg, "timed out"):
		return a.fail(ErrTimeout, fmt.Sprintf("no contact within %s", a.u.opts.UpgradeTimeout))
	case msg == "terminating":
		return a.fail(ErrStopped, "")
	case strings.HasPrefix(msg, "can't start child"):
		return a.fail(ErrSpawn, msg)
	case strings.HasPrefix(msg, "child ") && strings.Contains(msg, " exited"):
		e := a.fail(ErrExited, "")
		e.Status, e.ExitCode = exitStatus(msg)
		e.Err = fmt.Errorf("%w with %s", ErrExited, e.Status)
		return e
	default:
		return a.fail(ErrSpawn, msg)
	}
}

// rollback puts this generation back in charge and makes sure the child is
// gone: it resumes accepting first, then asks a serving child to drain and
// exit, and kills it if it does not in time.
func (a *attempt) rollback(cause error, tfDone chan error) {
	u := a.u
	u.setPaused(false)
	u.mu.Lock()
	wrote := u.pidWrite
	u.mu.Unlock()
	if wrote {
		_ = u.writePIDFile() // the child may have written it just before failing
	}
	u.sdRolledBack(a.gen, cause)
	u.emit(Event{Kind: EventRolledBack, Generation: a.gen, PID: a.pid, Duration: time.Since(a.start), Err: cause})

	grace := time.Duration(0)
	if a.conn != nil {
		if a.serving {
			grace = u.opts.DrainTimeout
		}
		_ = a.conn.Send(control.Message{Type: control.TypeRollback, Reason: cause.Error()})
	}
	if grace == 0 && a.pid != 0 {
		_ = syscall.Kill(a.pid, syscall.SIGKILL)
	}
	kill := time.NewTimer(grace)
	defer kill.Stop()
	// Bounded: SIGKILL at the grace deadline, tableflip's own timeout for a
	// child that never reported its pid.
	giveUp := time.NewTimer(grace + u.opts.UpgradeTimeout + u.opts.DrainTimeout + 2*time.Second)
	defer giveUp.Stop()
	for {
		select {
		case err := <-tfDone:
			if err == nil {
				u.log.Error("handoff: new generation signalled readiness after it was rolled back", "generation", a.gen, "pid", a.pid)
			}
			return
		case <-kill.C:
			if a.pid != 0 {
				_ = syscall.Kill(a.pid, syscall.SIGKILL)
			}
		case <-giveUp.C:
			u.log.Error("handoff: new generation did not exit after rollback", "generation", a.gen, "pid", a.pid)
			return
		}
	}
}
