package listener

// SetChangedHook installs f to be called (with the listener's mutex held:
// f must not block or call back) after every change of l's tracked state.
// Call it before l is used.
func SetChangedHook(l *Listener, f func()) { l.test.changed = f }

// InAccept returns how many goroutines are inside the inner Accept.
func InAccept(l *Listener) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inAccept
}

// Live returns how many conns are tracked (not yet released).
func Live(l *Listener) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.live
}

// SetIdleCheckedHook installs f to be called after every run of an idle
// timer. Call it before l is used.
func SetIdleCheckedHook(l *Listener, f func()) { l.test.idleChecked = f }
