package bundle

import "time"

// SetClock replaces the Handler's clock, for grace period tests.
func SetClock(h *Handler, now func() time.Time) { h.now = now }
