package plugin

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Defaults for CanaryOptions.
const (
	DefaultCanaryMinCalls          = 20
	DefaultCanaryMaxErrorRate      = 0.05
	DefaultCanaryPromoteAfterCalls = 1000
)

// CanaryOptions configures canaries: a new version first answers a share of
// the keys; it is promoted after PromoteAfterCalls calls or PromoteAfter,
// whichever comes first, if its error rate stayed at or below MaxErrorRate,
// and rolled back as soon as its error rate is above MaxErrorRate after at
// least MinCalls calls. A canary whose process crashes is rolled back too.
// Every decision is reported as an event.
type CanaryOptions struct {
	// Percent of the keys the canary answers, in (0, 100]. 0 disables
	// canaries: Reload swaps, Canary fails with ErrNoCanary.
	Percent float64

	// MinCalls is the number of canary calls before its error rate is
	// judged. Default DefaultCanaryMinCalls; negative: none, judged from
	// the first call.
	MinCalls int64

	// MaxErrorRate is the highest acceptable share of failed canary calls.
	// Default DefaultCanaryMaxErrorRate; a negative value means 0 (any
	// failure rolls back).
	MaxErrorRate float64

	// PromoteAfterCalls promotes a canary that answered this many calls.
	// Default DefaultCanaryPromoteAfterCalls; negative: never by count.
	PromoteAfterCalls int64

	// PromoteAfter promotes a canary that has run this long. Default 0:
	// never by time.
	PromoteAfter time.Duration

	// IsFailure tells which errors of a call count against the canary.
	// Default: every non-nil error. Errors such as "not found" that are
	// answers rather than faults can be excluded here.
	IsFailure func(error) bool
}

func (c CanaryOptions) withDefaults() CanaryOptions {
	c.Percent = min(max(c.Percent, 0), 100)
	switch {
	case c.MinCalls == 0:
		c.MinCalls = DefaultCanaryMinCalls
	case c.MinCalls < 0:
		c.MinCalls = 0
	}
	switch {
	case c.MaxErrorRate == 0:
		c.MaxErrorRate = DefaultCanaryMaxErrorRate
	case c.MaxErrorRate < 0:
		c.MaxErrorRate = 0
	}
	if c.PromoteAfterCalls == 0 {
		c.PromoteAfterCalls = DefaultCanaryPromoteAfterCalls
	}
	if c.IsFailure == nil {
		c.IsFailure = func(err error) bool { return err != nil }
	}
	return c
}

// share is Percent in buckets of 10000.
func (c CanaryOptions) share() uint64 { return uint64(c.Percent*100 + 0.5) }

// trial counts one canary's calls.
type trial struct {
	started  time.Time
	calls    atomic.Int64
	failures atomic.Int64
	notified atomic.Bool // a verdict is pending with the loop
	timer    *time.Timer // PromoteAfter, nil when off
}

func (m *Manager[T]) newTrial() *trial {
	t := &trial{started: time.Now()}
	if d := m.opts.Canary.PromoteAfter; d > 0 {
		t.timer = time.AfterFunc(d, func() {
			t.notified.Store(true)
			m.notifyVerdict()
		})
	}
	return t
}

func (t *trial) stop() {
	if t.timer != nil {
		t.timer.Stop()
	}
}

func (m *Manager[T]) notifyVerdict() {
	select {
	case m.verdictCh <- struct{}{}:
	default: // one is pending already; it will see the latest counts
	}
}

// recordCanary counts a canary call and tells the loop when a verdict is due.
func (m *Manager[T]) recordCanary(t *trial, err error) {
	c := t.calls.Add(1)
	f := t.failures.Load()
	if err != nil && m.opts.Canary.IsFailure(err) {
		f = t.failures.Add(1)
	}
	if m.verdict(t, c, f) == "" || t.notified.Load() || !t.notified.CompareAndSwap(false, true) {
		return
	}
	m.notifyVerdict()
}

// verdict returns "promote", "rollback" or "" (keep going).
func (m *Manager[T]) verdict(t *trial, calls, errs int64) string {
	o := m.opts.Canary
	bad := calls >= o.MinCalls && float64(errs) > o.MaxErrorRate*float64(calls)
	switch {
	case bad:
		return "rollback"
	case float64(errs) > o.MaxErrorRate*float64(calls):
		return "" // too few calls to judge, and not good enough to promote
	case o.PromoteAfterCalls > 0 && calls >= o.PromoteAfterCalls:
		return "promote"
	case o.PromoteAfter > 0 && time.Since(t.started) >= o.PromoteAfter:
		return "promote"
	}
	return ""
}

// judgeCanary runs on the loop when a verdict may be due.
func (m *Manager[T]) judgeCanary() {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	r := m.route
	if r == nil || r.canary == nil {
		return
	}
	t := r.trial
	calls, errs := t.calls.Load(), t.failures.Load()
	switch m.verdict(t, calls, errs) {
	case "rollback":
		m.abortCanaryLocked(fmt.Sprintf("error rate %.1f%% above %.1f%% after %d calls",
			100*float64(errs)/float64(calls), 100*m.opts.Canary.MaxErrorRate, calls), nil)
	case "promote":
		reason := fmt.Sprintf("%d calls, %d failed", calls, errs)
		if m.opts.Canary.PromoteAfterCalls <= 0 || calls < m.opts.Canary.PromoteAfterCalls {
			reason = fmt.Sprintf("ran %s; %s", time.Since(t.started).Round(time.Millisecond), reason)
		}
		m.promoteLocked(reason)
	default:
		t.notified.Store(false)
		// Counts may have moved between the load and the reset.
		if m.verdict(t, t.calls.Load(), t.failures.Load()) != "" && t.notified.CompareAndSwap(false, true) {
			m.notifyVerdict()
		}
	}
}

// promoteLocked makes the canary stable. opMu is held and there is a canary.
func (m *Manager[T]) promoteLocked(reason string) Version {
	r := m.route
	c, t := r.canary, r.trial
	m.setRoute(&route[T]{stable: c})
	m.prev = r.stable.v
	m.setState(c.v, StateServing)
	m.emit(Event{Kind: EventCanaryPromoted, Version: c.v.id, Previous: r.stable.v.id, PluginPID: c.pid,
		Calls: t.calls.Load(), Failures: t.failures.Load(), Reason: reason, Duration: time.Since(t.started)})
	return m.info(c.v)
}

// abortCanaryLocked removes the canary: every key goes back to the stable
// version. opMu is held and there is a canary.
func (m *Manager[T]) abortCanaryLocked(reason string, err error) Version {
	r := m.route
	c, t := r.canary, r.trial
	m.setRoute(&route[T]{stable: r.stable})
	m.emit(Event{Kind: EventCanaryRolledBack, Version: c.v.id, Previous: r.stable.v.id, PluginPID: c.pid,
		Calls: t.calls.Load(), Failures: t.failures.Load(), Reason: reason, Err: err, Duration: time.Since(t.started)})
	return m.info(r.stable.v)
}
