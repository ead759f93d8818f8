package plugin

import (
	"context"
	"log/slog"
	"time"
)

// EventKind says what an Event reports.
type EventKind int

// The events a Manager reports, to Options.OnEvent and as slog records.
const (
	// EventStaged: a binary was copied to the staging directory and its
	// checksum accepted. Duration is the copy; Path the binary.
	EventStaged EventKind = iota + 1
	// EventUnchanged: a load found the binary already running (Version).
	EventUnchanged
	// EventRefused: a version failed to load; the serving one stays. Err is
	// the *LoadError; Duration the time spent loading.
	EventRefused
	// EventSwapped: a version became the stable one, replacing Previous.
	// Duration is load to serving.
	EventSwapped
	// EventRetired: a replaced process drained (or hit the drain deadline:
	// Forced) and was killed. Duration is the drain.
	EventRetired
	// EventCrashed: a plugin process exited on its own. Err is its exit
	// status.
	EventCrashed
	// EventRestarted: a crashed stable version runs again, as PluginPID.
	// Duration is the restart.
	EventRestarted
	// EventRestartFailed: a restart attempt failed (Err); another follows
	// after a backoff.
	EventRestartFailed
	// EventCanaryStarted: a version takes Percent % of the keys beside the
	// stable one (Previous). Duration is load to serving.
	EventCanaryStarted
	// EventCanaryPromoted: the canary became the stable version (Reason;
	// the Calls and Failures it saw). Duration is its trial.
	EventCanaryPromoted
	// EventCanaryRolledBack: the canary was removed (Reason, and Err when
	// an error caused it; the Calls and Failures it saw). Duration is its
	// trial.
	EventCanaryRolledBack
	// EventRolledBack: Rollback made the previous version stable again.
	// Duration is its start.
	EventRolledBack
	// EventReclaimed: New removed the staging directory (Path) of a host
	// that died without closing its Manager. Err is set if the removal
	// failed.
	EventReclaimed
)

var kindNames = [...]string{
	EventStaged:           "staged",
	EventUnchanged:        "unchanged",
	EventRefused:          "refused",
	EventSwapped:          "swapped",
	EventRetired:          "retired",
	EventCrashed:          "crashed",
	EventRestarted:        "restarted",
	EventRestartFailed:    "restart-failed",
	EventCanaryStarted:    "canary-started",
	EventCanaryPromoted:   "canary-promoted",
	EventCanaryRolledBack: "canary-rolled-back",
	EventRolledBack:       "rolled-back",
	EventReclaimed:        "reclaimed",
}

// String returns the kind's kebab-case name, as in the slog records.
func (k EventKind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Event reports one change of a Manager.
type Event struct {
	Kind     EventKind
	Time     time.Time     // when it happened
	Duration time.Duration // the phase that ended (see each kind); 0 if none
	Err      error         // the failure or the reason; nil if none

	Version   string  // the version concerned
	Previous  string  // the version it replaced (swaps, promotions, rollbacks)
	PluginPID int     // the plugin process concerned
	Path      string  // the binary (staged, refused) or directory (reclaimed)
	Forced    bool    // retired with calls still running at the drain deadline
	Percent   float64 // canary share
	Calls     int64   // calls the canary answered
	Failures  int64   // of those, the ones CanaryOptions.IsFailure counts
	Reason    string  // why a canary was promoted or rolled back
}

// level is the slog level of e's record.
func (e Event) level() slog.Level {
	switch e.Kind {
	case EventStaged, EventUnchanged:
		return slog.LevelDebug
	case EventRefused, EventCrashed, EventRestartFailed:
		return slog.LevelError
	case EventCanaryRolledBack, EventRolledBack:
		return slog.LevelWarn
	}
	if e.Forced || e.Err != nil {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// attrs are e's slog attributes: event, duration and error first, then the
// fields that are set, in snake_case.
func (e Event) attrs() []slog.Attr {
	a := make([]slog.Attr, 0, 8)
	a = append(a, slog.String("event", e.Kind.String()))
	if e.Duration != 0 {
		a = append(a, slog.Duration("duration", e.Duration))
	}
	if e.Err != nil {
		a = append(a, slog.Any("error", e.Err))
	}
	if e.Version != "" {
		a = append(a, slog.String("version", e.Version))
	}
	if e.Previous != "" {
		a = append(a, slog.String("previous", e.Previous))
	}
	if e.PluginPID != 0 {
		a = append(a, slog.Int("plugin_pid", e.PluginPID))
	}
	if e.Path != "" {
		a = append(a, slog.String("path", e.Path))
	}
	if e.Forced {
		a = append(a, slog.Bool("forced", true))
	}
	if e.Percent != 0 {
		a = append(a, slog.Float64("percent", e.Percent))
	}
	if e.Calls != 0 || e.Failures != 0 {
		a = append(a, slog.Int64("calls", e.Calls), slog.Int64("failures", e.Failures))
	}
	if e.Reason != "" {
		a = append(a, slog.String("reason", e.Reason))
	}
	return a
}

// emit stamps e, logs it as one record ("plugin: <kind>") and passes it to
// Options.OnEvent, in that order and synchronously. It changes no state.
func (m *Manager[T]) emit(e Event) {
	e.Time = time.Now()
	if lvl := e.level(); m.log.Enabled(context.Background(), lvl) {
		m.log.LogAttrs(context.Background(), lvl, "plugin: "+e.Kind.String(), e.attrs()...)
	}
	if m.opts.OnEvent != nil {
		m.opts.OnEvent(e)
	}
}
