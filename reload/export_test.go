package reload

import "time"

// SetClock replaces v's clock (replacement times, RetainFor), for retention
// tests. Call it before v is used.
func SetClock[T any](v *Value[T], now func() time.Time) { v.now = now }

// SetDebounce changes w's debounce period between two Runs.
func SetDebounce[T any](w *Watcher[T], d time.Duration) { w.debounce = d }
