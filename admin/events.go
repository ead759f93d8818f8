package admin

import (
	"context"
	"log/slog"
	"time"
)

// EventKind says what an Event reports.
type EventKind int

// The events of a Handler: every control request is refused, or started
// and then finished.
const (
	// EventRefused: a control request was refused (Err says why: no
	// Authorize hook, the hook's answer, a cross-origin request).
	EventRefused EventKind = iota + 1
	// EventStarted: an authorised control began.
	EventStarted
	// EventFinished: a control ended after Duration; Err is its failure.
	EventFinished
)

var kindNames = [...]string{EventRefused: "refused", EventStarted: "started", EventFinished: "finished"}

// String returns the kind's kebab-case name, as logged under "event".
func (k EventKind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Event reports a control request, to Options.OnEvent and as one slog
// record ("admin: <kind>").
type Event struct {
	Kind     EventKind
	Time     time.Time     // when it happened
	Duration time.Duration // EventFinished: how long the control ran
	Err      error         // why it was refused, or how it failed

	Control Control // what was asked
	Remote  string  // the request's RemoteAddr
	Result  string  // EventFinished: what it did ("generation 4", a version)
}

func (h *Handler) emit(e Event) {
	e.Time = time.Now()
	level := slog.LevelInfo
	attrs := []slog.Attr{slog.String("event", e.Kind.String())}
	if e.Duration != 0 {
		attrs = append(attrs, slog.Duration("duration", e.Duration))
	}
	if e.Err != nil {
		attrs = append(attrs, slog.String("error", e.Err.Error()))
		level = slog.LevelWarn
	}
	attrs = append(attrs, slog.String("action", e.Control.Action))
	if t := e.Control.target(); t != "" {
		attrs = append(attrs, slog.String("target", t))
	}
	attrs = append(attrs, slog.String("remote_addr", e.Remote))
	if e.Result != "" {
		attrs = append(attrs, slog.String("result", e.Result))
	}
	h.log.LogAttrs(context.Background(), level, "admin: "+e.Kind.String(), attrs...)
	if h.opts.OnEvent != nil {
		h.opts.OnEvent(e)
	}
}
