package reload

import (
	"context"
	"log/slog"
	"time"
)

// EventKind says what an [Event] reports.
type EventKind int

const (
	// EventSwap: a new version became current (Seq, ID, Source; Previous is
	// the Seq it replaced, 0 for the first). Duration is the time spent in
	// the Loader, for Load.
	EventSwap EventKind = iota + 1
	// EventUnchanged: Load loaded a value with the current ID; nothing
	// swapped. Duration is the time spent in the Loader.
	EventUnchanged
	// EventFailure: a load, validation or rollback failed; the current
	// version (Previous) keeps serving. Err says why; Duration is the time
	// spent in the Loader, if it ran.
	EventFailure
	// EventRollback: a retained version (Seq) became current again,
	// replacing Previous.
	EventRollback
	// EventRelease: a version's last reference ended and Options.Release ran.
	EventRelease
	// EventClose: the Value was closed.
	EventClose
	// EventChange: a [Watcher] saw its path change (Source) and, the
	// debounce period over, loads it.
	EventChange
	// EventWatchError: a [Watcher] could not watch part of its path, or
	// the system dropped events (Err); it keeps watching what it can and,
	// after an overflow, loads once to catch up.
	EventWatchError
)

var kindNames = [...]string{
	EventSwap:       "swap",
	EventUnchanged:  "unchanged",
	EventFailure:    "failure",
	EventRollback:   "rollback",
	EventRelease:    "release",
	EventClose:      "close",
	EventChange:     "change",
	EventWatchError: "watch-error",
}

// String returns the kind's kebab-case name, as logged under the key "event".
func (k EventKind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Event reports a change of a [Value], or of the [Watcher] that reloads
// it, to Options.OnEvent. Each event is also logged as one record on
// Options.Logger (or WatcherOptions.Logger): message "reload: <kind>",
// attributes event, duration (when not zero), error (when Err is set), then
// seq, id, source and previous (when set).
type Event struct {
	Kind     EventKind
	Time     time.Time     // when it happened
	Duration time.Duration // time spent in the Loader (swap, unchanged, failure); 0 otherwise
	Err      error         // EventFailure and EventWatchError only

	Seq      uint64 // the version concerned (0 for failures, close and watcher events)
	ID       string
	Source   string
	Previous uint64 // the version replaced (swap, rollback) or kept (failure)
}

// level is the slog level of a kind's record.
func (k EventKind) level() slog.Level {
	switch k {
	case EventFailure:
		return slog.LevelError
	case EventRollback, EventWatchError:
		return slog.LevelWarn
	case EventUnchanged, EventRelease, EventChange:
		return slog.LevelDebug
	default:
		return slog.LevelInfo
	}
}

// report logs e on log and then hands it to onEvent, synchronously, on the
// calling goroutine.
func report(log *slog.Logger, onEvent func(Event), e Event) {
	level := e.Kind.level()
	if ctx := context.Background(); log.Enabled(ctx, level) {
		attrs := make([]slog.Attr, 0, 7)
		attrs = append(attrs, slog.String("event", e.Kind.String()))
		if e.Duration != 0 {
			attrs = append(attrs, slog.Duration("duration", e.Duration))
		}
		if e.Err != nil {
			attrs = append(attrs, slog.Any("error", e.Err))
		}
		if e.Seq != 0 {
			attrs = append(attrs, slog.Uint64("seq", e.Seq))
		}
		if e.ID != "" {
			attrs = append(attrs, slog.String("id", e.ID))
		}
		if e.Source != "" {
			attrs = append(attrs, slog.String("source", e.Source))
		}
		if e.Previous != 0 {
			attrs = append(attrs, slog.Uint64("previous", e.Previous))
		}
		log.LogAttrs(ctx, level, "reload: "+e.Kind.String(), attrs...)
	}
	if onEvent != nil {
		onEvent(e)
	}
}
