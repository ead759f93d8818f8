package reload

import "time"

// EventKind says what an [Event] reports.
type EventKind int

const (
	// EventSwap: a new version became current (Seq, ID, Source; Previous is
	// the Seq it replaced, 0 for the first).
	EventSwap EventKind = iota + 1
	// EventUnchanged: Load loaded a value with the current ID; nothing swapped.
	EventUnchanged
	// EventFailure: a load, validation or rollback failed; the current
	// version (Previous) keeps serving. Err says why.
	EventFailure
	// EventRollback: a retained version (Seq) became current again,
	// replacing Previous.
	EventRollback
	// EventRelease: a version's last reference ended and Options.Release ran.
	EventRelease
	// EventClose: the Value was closed.
	EventClose
)

func (k EventKind) String() string {
	switch k {
	case EventSwap:
		return "swap"
	case EventUnchanged:
		return "unchanged"
	case EventFailure:
		return "failure"
	case EventRollback:
		return "rollback"
	case EventRelease:
		return "release"
	case EventClose:
		return "close"
	default:
		return "unknown"
	}
}

// Event reports a change of a [Value] to Options.OnEvent.
type Event struct {
	Kind     EventKind
	Time     time.Time
	Seq      uint64 // the version concerned (0 for failures and close)
	ID       string
	Source   string
	Previous uint64        // the version replaced (swap, rollback) or kept (failure)
	Err      error         // EventFailure only
	Took     time.Duration // time spent in the Loader, for Load
}
