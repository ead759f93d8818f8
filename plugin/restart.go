package plugin

import (
	"context"
	"time"
)

// loop owns crash restarts and canary verdicts. It ends at Close.
func (m *Manager[T]) loop() {
	defer m.loopWG.Done()
	var (
		pending *instance[T] // crashed stable instance waiting for a restart
		retry   *time.Timer
		retryC  <-chan time.Time
	)
	arm := func(d time.Duration) {
		if retry == nil {
			retry = time.NewTimer(d)
		} else {
			retry.Reset(d)
		}
		retryC = retry.C
	}
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		select {
		case <-m.closed:
			return
		case inst := <-m.crashCh:
			if m.handleCrash(inst) {
				pending = inst
				arm(m.nextBackoff())
			}
		case <-retryC:
			retryC = nil
			if pending != nil && !m.restart(pending) {
				arm(m.nextBackoff())
			} else {
				pending = nil
			}
		case <-m.verdictCh:
			m.judgeCanary()
		}
	}
}

// nextBackoff returns the wait before the next restart attempt and doubles
// the one after. Only the loop goroutine uses m.backoff.
func (m *Manager[T]) nextBackoff() time.Duration {
	d := m.backoff
	m.backoff = min(max(m.opts.RestartBackoff, 2*d), m.opts.MaxRestartBackoff)
	return d
}

// handleCrash reacts to the exit of a process nobody asked to exit. It
// reports whether inst is the stable instance and must be restarted.
func (m *Manager[T]) handleCrash(inst *instance[T]) bool {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	r := m.route
	if r == nil || inst.retiring.Load() {
		return false
	}
	m.emit(Event{Kind: EventCrashed, Version: inst.v.id, PluginPID: inst.pid, Err: inst.run.exitErr})
	if inst == r.canary {
		m.abortCanaryLocked("the canary crashed", inst.run.exitErr)
		return false
	}
	if inst != r.stable {
		return false
	}
	if time.Since(inst.since) >= m.opts.MaxRestartBackoff {
		m.backoff = 0
	}
	return true
}

// restart starts a new process for the crashed stable instance inst. It
// reports whether it is done: restarted, or inst is no longer the stable
// instance (a swap or rollback replaced it meanwhile).
func (m *Manager[T]) restart(inst *instance[T]) bool {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	r := m.route
	if r == nil || r.stable != inst {
		return true
	}
	ctx, stop := m.opContext(context.Background())
	defer stop()
	start := time.Now()
	n, err := m.start(ctx, inst.v)
	if err != nil {
		m.emit(Event{Kind: EventRestartFailed, Version: inst.v.id, Err: err, Duration: time.Since(start)})
		return false
	}
	m.setRoute(&route[T]{stable: n, canary: r.canary, share: r.share, trial: r.trial})
	m.mu.Lock()
	inst.v.info.Restarts++
	m.mu.Unlock()
	m.emit(Event{Kind: EventRestarted, Version: inst.v.id, PluginPID: n.pid, Duration: time.Since(start)})
	return true
}
