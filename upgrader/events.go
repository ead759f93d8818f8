package upgrader

import (
	"context"
	"log/slog"
	"time"

	"github.com/handoff-go/handoff/listener"
)

// EventKind names a phase of a generation's life.
type EventKind int

// The phases, in the order an upgrade goes through them. The previous
// generation reports Triggered, Spawned, Accepting, ProbationPassed or
// ProbationFailed, Committed or RolledBack, DrainStarted and DrainFinished
// (and SuccessorExited, Reclaimed if its successor dies while it drains);
// the new generation reports Ready (its own start), Committed, and
// ParentExited. A first generation reports Ready and Committed.
const (
	// EventTriggered: an upgrade started.
	EventTriggered EventKind = iota + 1
	// EventSpawned: the new process reported itself over the control
	// channel. Duration is the time since the trigger.
	EventSpawned
	// EventReady: a generation passed its health check and accepts
	// connections. Duration is the time from spawn (or from New on a first
	// start) to ready.
	EventReady
	// EventAccepting: seen from the previous generation, the new one
	// accepts connections; the previous one stops accepting. Duration is
	// the time since the trigger (signal to new generation serving).
	EventAccepting
	// EventProbationPassed: the new generation held its probation window.
	EventProbationPassed
	// EventProbationFailed: a health check failed during probation.
	EventProbationFailed
	// EventCommitted: the new generation is in charge. Duration is the time
	// since the trigger.
	EventCommitted
	// EventRolledBack: the upgrade failed and the previous generation
	// resumed accepting. Err says why.
	EventRolledBack
	// EventDrainStarted: this generation stopped accepting and drains.
	EventDrainStarted
	// EventDrainFinished: the drain ended. Drain holds the counts.
	EventDrainFinished
	// EventParentExited: seen from the new generation, the previous one
	// exited. Duration is the time since this generation committed.
	EventParentExited
	// EventStopping: Stop was called.
	EventStopping
	// EventUnusedSocket: a socket passed by systemd (socket activation)
	// was claimed by no Listen or ListenActivated call by the time the
	// first generation was ready; it is closed. Err names it.
	EventUnusedSocket
	// EventForwarded: an upgrade was requested from a generation that had
	// handed over; the request went to its successor, which carries it
	// out once this generation has exited. Generation and PID name the
	// successor.
	EventForwarded
	// EventSuccessorExited: seen from a generation that handed over, its
	// successor ended before this generation's drain did. Err says how:
	// it died, or it was stopped.
	EventSuccessorExited
	// EventReclaimed: after EventSuccessorExited for a successor that
	// died, this generation took charge again: it accepts, and the PID
	// file names it. Drain returns ErrReclaimed.
	EventReclaimed
)

var kindNames = [...]string{
	EventTriggered:       "triggered",
	EventSpawned:         "spawned",
	EventReady:           "ready",
	EventAccepting:       "accepting",
	EventProbationPassed: "probation-passed",
	EventProbationFailed: "probation-failed",
	EventCommitted:       "committed",
	EventRolledBack:      "rolled-back",
	EventDrainStarted:    "drain-started",
	EventDrainFinished:   "drain-finished",
	EventParentExited:    "parent-exited",
	EventStopping:        "stopping",
	EventUnusedSocket:    "unused-socket",
	EventForwarded:       "forwarded",
	EventSuccessorExited: "successor-exited",
	EventReclaimed:       "reclaimed",
}

func (k EventKind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Event reports one phase. Options.OnEvent receives every event, and each is
// logged through Options.Logger.
type Event struct {
	Kind EventKind
	// Time is when it happened.
	Time time.Time
	// Duration of the phase that ended; see each kind.
	Duration time.Duration
	// Err is the reason of a rollback, a failed probation, a successor's
	// end, or the socket systemd passed in vain.
	Err error
	// Generation the event is about: the new one for spawn, accepting,
	// probation, commit, rollback, forwarded and successor-exited; this
	// process's own for drain, ready, parent-exited, stopping and
	// reclaimed.
	Generation int
	// PID of the process the event is about.
	PID int
	// Drain holds the counts of EventDrainFinished.
	Drain listener.DrainStats
}

func (u *Upgrader) emit(e Event, extra ...slog.Attr) {
	e.Time = time.Now()
	attrs := []slog.Attr{slog.String("event", e.Kind.String())}
	if e.Duration != 0 {
		attrs = append(attrs, slog.Duration("duration", e.Duration))
	}
	level := slog.LevelInfo
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
		level = slog.LevelWarn
	}
	attrs = append(attrs, slog.Int("generation", e.Generation), slog.Int("target_pid", e.PID))
	if e.Kind == EventDrainFinished {
		attrs = append(attrs,
			slog.Int("conns", e.Drain.Conns),
			slog.Int("closed_idle", e.Drain.ClosedIdle),
			slog.Int("forced", e.Drain.Forced),
			slog.Int("handed_over", e.Drain.HandedOver),
			slog.Int("kept", e.Drain.Kept()))
		if e.Drain.Forced > 0 {
			level = slog.LevelWarn
		}
	}
	attrs = append(attrs, extra...)
	u.log.LogAttrs(context.Background(), level, "upgrader: "+e.Kind.String(), attrs...)
	if u.opts.OnEvent != nil {
		u.opts.OnEvent(e)
	}
}
