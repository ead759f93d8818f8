package plugin

import (
	"context"
	"log/slog"
	"time"
)

// EventKind says what an Event reports.
type EventKind string

// The events a Manager reports, to Options.OnEvent and as slog records.
const (
	EventStaged           EventKind = "staged"             // a binary was copied and its checksum accepted
	EventUnchanged        EventKind = "unchanged"          // a reload found the binary already running
	EventRefused          EventKind = "refused"            // a version failed to load (Err); the serving one stays
	EventSwapped          EventKind = "swapped"            // a version became the stable one (Previous it replaced)
	EventRetired          EventKind = "retired"            // a replaced process drained (or hit the deadline: Forced) and was killed
	EventCrashed          EventKind = "crashed"            // a process exited on its own (Err: its exit status)
	EventRestarted        EventKind = "restarted"          // a crashed stable version runs again (PID)
	EventRestartFailed    EventKind = "restart-failed"     // a restart attempt failed (Err); another follows after a backoff
	EventCanaryStarted    EventKind = "canary-started"     // a version takes Percent % of the keys
	EventCanaryPromoted   EventKind = "canary-promoted"    // the canary became the stable version
	EventCanaryRolledBack EventKind = "canary-rolled-back" // the canary was removed (Reason; Calls and Errors it saw)
	EventRolledBack       EventKind = "rolled-back"        // Rollback made the previous version stable again
)

// Event reports one change of a Manager.
type Event struct {
	Kind     EventKind
	Time     time.Time
	Version  string        // the version concerned
	Previous string        // the version it replaced (swaps, promotions, rollbacks)
	PID      int           // the process concerned
	Took     time.Duration // load to serving; drain to kill (retired); restart
	Forced   bool          // retired with calls still running at the drain deadline
	Percent  float64       // canary share
	Calls    int64         // calls the canary answered
	Errors   int64         // of those, the failures
	Reason   string        // why a canary was promoted or rolled back
	Err      error
}

func (m *Manager[T]) emit(e Event) {
	e.Time = time.Now()
	lvl := slog.LevelInfo
	switch e.Kind {
	case EventStaged, EventUnchanged:
		lvl = slog.LevelDebug
	case EventRefused, EventCrashed, EventRestartFailed:
		lvl = slog.LevelError
	case EventCanaryRolledBack, EventRolledBack:
		lvl = slog.LevelWarn
	case EventRetired:
		if e.Forced {
			lvl = slog.LevelWarn
		}
	}
	if m.log.Enabled(context.Background(), lvl) {
		attrs := []any{"event", string(e.Kind), "version", e.Version}
		if e.Previous != "" {
			attrs = append(attrs, "previous", e.Previous)
		}
		if e.PID != 0 {
			attrs = append(attrs, "pid", e.PID)
		}
		if e.Took != 0 {
			attrs = append(attrs, "took", e.Took)
		}
		if e.Forced {
			attrs = append(attrs, "forced", true)
		}
		if e.Percent != 0 {
			attrs = append(attrs, "percent", e.Percent)
		}
		if e.Calls != 0 || e.Errors != 0 {
			attrs = append(attrs, "calls", e.Calls, "errors", e.Errors)
		}
		if e.Reason != "" {
			attrs = append(attrs, "reason", e.Reason)
		}
		if e.Err != nil {
			attrs = append(attrs, "err", e.Err)
		}
		m.log.Log(context.Background(), lvl, "plugin: "+string(e.Kind), attrs...)
	}
	if m.opts.OnEvent != nil {
		m.opts.OnEvent(e)
	}
}
