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

// SetArrivedHook installs f to be called by Read when the first bytes
// arrive on a conn since it last became idle (or since it was accepted).
// Call it before l is used.
func SetArrivedHook(l *Listener, f func()) { l.test.arrived = f }

// Waiters returns how many Await calls are registered.
func Waiters(l *Listener) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.waiters)
}

// DrainCalls returns how many Drain calls wait for the drain in progress.
func DrainCalls(l *Listener) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.drain == nil {
		return 0
	}
	return l.drain.calls
}

// SetBeforePeekHook installs f to be called by a hand-over of a conn just
// before it looks for bytes of a next request. Call it before l is used.
func SetBeforePeekHook(l *Listener, f func()) { l.test.beforePeek = f }
