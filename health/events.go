package health

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// EventKind names a change of a Policy.
type EventKind int

// The events, in the order a process goes through them.
const (
	// EventGracePeriod: New found that ShutdownDelay + DrainTimeout do not
	// fit in Options.GracePeriod. Err says by how much (ErrGracePeriod).
	// A warning.
	EventGracePeriod EventKind = iota + 1
	// EventServing: the process is in charge and serves (Started).
	// Duration is the time since New, or, after a drain called off, since
	// the drain began.
	EventServing
	// EventStopping: Stop was called. Err is its cause; Delay is the
	// shutdown delay that begins (0 if none).
	EventStopping
	// EventPreStop: the preStop endpoint was called. Calls counts the
	// calls so far (1 for the first).
	EventPreStop
	// EventDraining: the drain began. Duration is the delay served (0 if
	// none).
	EventDraining
	// EventDrained: the drain is over (Drained). Duration is the drain's.
	EventDrained
)

var kindNames = map[EventKind]string{
	EventGracePeriod: "grace-period-short",
	EventServing:     "serving",
	EventStopping:    "stopping",
	EventPreStop:     "prestop",
	EventDraining:    "draining",
	EventDrained:     "drained",
}

func (k EventKind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// Event reports one change. Options.OnEvent receives every event, and each
// is logged through Options.Logger.
type Event struct {
	Kind EventKind
	// Time is when it happened.
	Time time.Time
	// Duration of the phase that ended; see each kind.
	Duration time.Duration
	// Err is the cause of a stop, or the grace period's problem.
	Err error
	// Phase is the phase after the event.
	Phase Phase
	// Delay is the shutdown delay that EventStopping begins.
	Delay time.Duration
	// Calls counts the preStop calls (EventPreStop).
	Calls int
}

// emit reports e: one record, then OnEvent.
func (p *Policy) emit(e Event) {
	p.emitMu.Lock()
	defer p.emitMu.Unlock()
	p.emitLocked(e)
}

// emitLocked is emit with emitMu held.
func (p *Policy) emitLocked(e Event) {
	level := slog.LevelInfo
	if e.Kind == EventGracePeriod {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{slog.String("event", e.Kind.String())}
	if e.Duration != 0 {
		attrs = append(attrs, slog.Duration("duration", e.Duration))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.Any("error", e.Err))
	}
	attrs = append(attrs, slog.String("phase", e.Phase.String()))
	if e.Kind == EventStopping {
		attrs = append(attrs, slog.Duration("delay", e.Delay))
	}
	if e.Kind == EventPreStop {
		attrs = append(attrs, slog.Int("calls", e.Calls))
	}
	p.log.LogAttrs(context.Background(), level, "health: "+message[e.Kind], attrs...)
	if p.opts.OnEvent != nil {
		p.opts.OnEvent(e)
	}
}

// message is each kind's log message, after "health: ".
var message = map[EventKind]string{
	EventGracePeriod: "grace period too short",
	EventServing:     "serving",
	EventStopping:    "stopping",
	EventPreStop:     "prestop called",
	EventDraining:    "draining",
	EventDrained:     "drained",
}
