package metrics

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/handoff-go/handoff/upgrader"
)

// Outcomes of an upgrade (the label outcome).
const (
	OutcomeCommitted  = "committed"
	OutcomeRolledBack = "rolled_back"
)

// Phases of an upgrade (the label phase), in order.
const (
	// PhaseSpawn: from the trigger until the new process reached
	// upgrader.New (seen from the new generation) or introduced itself
	// over the control channel (seen from the old one).
	PhaseSpawn = "spawn"
	// PhaseReady: from there until the new generation accepted
	// connections (its first health check passed).
	PhaseReady = "ready"
	// PhaseProbation: from there until the commit.
	PhaseProbation = "probation"
	// PhaseDrain: from the commit until the previous generation exited
	// (its drain and its exit), seen from the new generation.
	PhaseDrain = "drain"
)

var phaseOrder = []string{PhaseSpawn, PhaseReady, PhaseProbation, PhaseDrain}

// The states of a process (Process.State).
const (
	StateStarting   = "starting"    // before Ready
	StateProbation  = "probation"   // a new generation on probation
	StateServing    = "serving"     // in charge
	StateUpgrading  = "upgrading"   // in charge, with an upgrade under way
	StateHandedOver = "handed-over" // its successor committed
	StateDraining   = "draining"    // draining its connections
	StateStopping   = "stopping"    // Stop was called
)

// upgrades is the upgrade part of the Recorder: what is carried to the
// next generation, and the upgrade in progress. Guarded by Recorder.mu.
type upgrades struct {
	outcomes    map[string]uint64     // by outcome
	reasons     map[string]uint64     // rollbacks by reason
	phases      map[string]*histogram // by phase
	durations   map[string]*histogram // by outcome: trigger to commit or rollback
	lastSuccess time.Time
	lastResult  int       // 1: the last upgrade committed, -1: rolled back, 0: none yet
	history     []Upgrade // oldest first

	cur       *Upgrade  // in progress, as this (old) generation sees it
	curAccept time.Time // when the new generation began accepting

	own          *Upgrade  // the upgrade that started this (new) generation, until its commit
	ownAccept    time.Time // when this generation began accepting
	ownCommitted time.Time // when it committed, until the previous generation exited
}

func newUpgrades(buckets []float64) upgrades {
	u := upgrades{
		outcomes:  map[string]uint64{OutcomeCommitted: 0, OutcomeRolledBack: 0},
		reasons:   map[string]uint64{},
		phases:    map[string]*histogram{},
		durations: map[string]*histogram{},
	}
	for _, p := range phaseOrder {
		u.phases[p] = newHistogram(buckets)
	}
	for _, o := range []string{OutcomeCommitted, OutcomeRolledBack} {
		u.durations[o] = newHistogram(buckets)
	}
	return u
}

// carried is what a generation hands the next one in its state part.
type carried struct {
	V           int                   `json:"v"`
	Outcomes    map[string]uint64     `json:"outcomes"`
	Reasons     map[string]uint64     `json:"reasons"`
	Phases      map[string]*histogram `json:"phases"`
	Durations   map[string]*histogram `json:"durations"`
	LastSuccess time.Time             `json:"last_success,omitzero"`
	LastResult  int                   `json:"last_result"`
	History     []Upgrade             `json:"history"`
	// Pending is the upgrade that starts the next generation: its number
	// and when it was triggered (when its state was saved).
	Pending *pending `json:"pending,omitempty"`
}

type pending struct {
	Generation int       `json:"generation"`
	Triggered  time.Time `json:"triggered"`
}

const carriedVersion = 1

// saveState is the Recorder's upgrader.SaveStatePart: it runs when an
// upgrade starts, before the new process does.
func (r *Recorder) saveState() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := carried{
		V:           carriedVersion,
		Outcomes:    r.up.outcomes,
		Reasons:     r.up.reasons,
		Phases:      r.up.phases,
		Durations:   r.up.durations,
		LastSuccess: r.up.lastSuccess,
		LastResult:  r.up.lastResult,
		History:     r.up.history,
		Pending:     &pending{Generation: r.gen + 1, Triggered: time.Now()},
	}
	return json.Marshal(c)
}

// adopt takes over what the previous generation carried; gen is this
// generation's number.
func (u *upgrades) adopt(part []byte, gen, history int) error {
	var c carried
	if err := json.Unmarshal(part, &c); err != nil {
		return err
	}
	if c.V != carriedVersion {
		return fmt.Errorf("carried state version %d, this binary reads %d", c.V, carriedVersion)
	}
	for k, v := range c.Outcomes {
		u.outcomes[k] = v
	}
	for k, v := range c.Reasons {
		u.reasons[k] = v
	}
	for k, h := range u.phases {
		h.adopt(c.Phases[k])
	}
	for k, h := range u.durations {
		h.adopt(c.Durations[k])
	}
	u.lastSuccess, u.lastResult = c.LastSuccess, c.LastResult
	u.history = c.History
	u.trim(history)
	if c.Pending != nil && c.Pending.Generation == gen {
		u.own = &Upgrade{Generation: gen, Triggered: c.Pending.Triggered, Phase: PhaseSpawn}
	}
	return nil
}

func (u *upgrades) trim(n int) {
	if len(u.history) > n {
		u.history = append([]Upgrade(nil), u.history[len(u.history)-n:]...)
	}
}

// OnUpgraderEvent records an event of the Upgrader: the phases of an
// upgrade, its outcome, drains. Its signature is handoff.Options.OnEvent's
// (and upgrader.Options.OnEvent's). It does not block.
func (r *Recorder) OnUpgraderEvent(e upgrader.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u := &r.up
	switch e.Kind {
	case upgrader.EventTriggered:
		u.cur = &Upgrade{Generation: e.Generation, Triggered: e.Time, Phase: PhaseSpawn}
		u.curAccept = time.Time{}
		r.state = StateUpgrading
	case upgrader.EventSpawned:
		if c := u.cur; c != nil {
			c.PID = e.PID
			c.Triggered = e.Time.Add(-e.Duration)
			c.setPhase(PhaseSpawn, e.Duration)
			c.Phase = PhaseReady
		}
	case upgrader.EventAccepting:
		if c := u.cur; c != nil {
			c.setPhase(PhaseReady, e.Duration-c.phase(PhaseSpawn))
			c.Phase = PhaseProbation
			u.curAccept = e.Time
		}
	case upgrader.EventProbationPassed:
		if c := u.cur; c != nil && !u.curAccept.IsZero() {
			c.setPhase(PhaseProbation, e.Time.Sub(u.curAccept))
		}
	case upgrader.EventProbationFailed:
		if c := u.cur; c != nil && e.Err != nil {
			c.Error = e.Err.Error()
		}
	case upgrader.EventCommitted:
		if e.PID == r.pid {
			r.ownCommitted(e)
		} else {
			r.handedOver(e)
		}
	case upgrader.EventRolledBack:
		r.rolledBack(e)
	case upgrader.EventReady:
		if r.gen == 0 {
			r.gen = e.Generation
		}
		r.state = StateServing
		if o := u.own; o != nil {
			created := e.Time.Add(-e.Duration)
			o.PID = r.pid
			o.setPhase(PhaseSpawn, max(created.Sub(o.Triggered), 0))
			o.setPhase(PhaseReady, e.Duration)
			o.Phase = PhaseProbation
			u.ownAccept = e.Time
			r.state = StateProbation
		}
	case upgrader.EventParentExited:
		r.parentExited(e)
	case upgrader.EventDrainStarted:
		r.draining = true
		r.state = StateDraining
	case upgrader.EventDrainFinished:
		r.drains++
		r.forced += uint64(e.Drain.Forced)
	case upgrader.EventStopping:
		r.state = StateStopping
	case upgrader.EventSuccessorExited:
		if n := len(u.history); n > 0 && u.history[n-1].Generation == e.Generation {
			u.history[n-1].Note = "the new generation ended while this one drained: " + errText(e.Err)
		}
	case upgrader.EventReclaimed:
		r.draining = false
		r.state = StateServing
		if n := len(u.history); n > 0 {
			u.history[n-1].Note += "; this generation took charge again"
		}
	default:
		return
	}
	r.notifyLocked()
}

// handedOver: this generation committed its successor. The successor
// observes the upgrade's histograms (this process is no longer scraped once
// it stops accepting); this one counts it, so that both agree.
func (r *Recorder) handedOver(e upgrader.Event) {
	u := &r.up
	c := u.cur
	if c == nil {
		c = &Upgrade{Generation: e.Generation, Triggered: e.Time.Add(-e.Duration)}
	}
	u.cur = nil
	c.PID = e.PID
	if c.phase(PhaseProbation) == 0 && !u.curAccept.IsZero() {
		c.setPhase(PhaseProbation, e.Time.Sub(u.curAccept))
	}
	c.end(OutcomeCommitted, e.Time, e.Duration)
	u.outcomes[OutcomeCommitted]++
	u.lastSuccess, u.lastResult = e.Time, 1
	u.push(*c, r.opts.History)
	r.state = StateHandedOver
}

// rolledBack: an upgrade this generation started failed; it serves on.
func (r *Recorder) rolledBack(e upgrader.Event) {
	u := &r.up
	c := u.cur
	if c == nil {
		c = &Upgrade{Generation: e.Generation, Triggered: e.Time.Add(-e.Duration)}
	}
	u.cur = nil
	if e.PID != 0 {
		c.PID = e.PID
	}
	reason := "other"
	var ue *upgrader.UpgradeError
	if errors.As(e.Err, &ue) {
		c.Phase = ue.Phase.String()
		reason = rollbackReason(ue.Err)
	}
	if !u.curAccept.IsZero() && c.phase(PhaseProbation) == 0 {
		c.setPhase(PhaseProbation, e.Time.Sub(u.curAccept))
	}
	c.Reason = reason
	c.Error = errText(e.Err)
	c.end(OutcomeRolledBack, e.Time, e.Duration)
	// Only the phases it completed go to the histograms: spawn once it
	// introduced itself, ready once it accepted.
	for _, p := range []string{PhaseSpawn, PhaseReady} {
		if d, ok := c.phaseOK(p); ok && (p == PhaseSpawn || !u.curAccept.IsZero()) {
			u.phases[p].observe(d)
		}
	}
	u.durations[OutcomeRolledBack].observe(e.Duration)
	u.outcomes[OutcomeRolledBack]++
	u.reasons[reason]++
	u.lastResult = -1
	u.push(*c, r.opts.History)
	r.state = StateServing
}

// ownCommitted: this generation took charge. If an upgrade started it, it
// is the one that counts the upgrade and observes its phases, from its own
// clock: the old generation is no longer scraped by then.
func (r *Recorder) ownCommitted(e upgrader.Event) {
	u := &r.up
	if r.gen == 0 {
		r.gen = e.Generation
	}
	r.state = StateServing
	o := u.own
	if o == nil {
		return // a first generation: no upgrade
	}
	u.own = nil
	if !u.ownAccept.IsZero() {
		o.setPhase(PhaseProbation, e.Time.Sub(u.ownAccept))
	}
	total := max(e.Time.Sub(o.Triggered), 0)
	o.end(OutcomeCommitted, e.Time, total)
	for _, p := range []string{PhaseSpawn, PhaseReady, PhaseProbation} {
		if d, ok := o.phaseOK(p); ok {
			u.phases[p].observe(d)
		}
	}
	u.durations[OutcomeCommitted].observe(total)
	u.outcomes[OutcomeCommitted]++
	u.lastSuccess, u.lastResult = e.Time, 1
	u.push(*o, r.opts.History)
	u.ownCommitted = e.Time
}

// parentExited ends the drain phase of the upgrade that started this
// generation.
func (r *Recorder) parentExited(e upgrader.Event) {
	u := &r.up
	if u.ownCommitted.IsZero() {
		return
	}
	d := e.Time.Sub(u.ownCommitted)
	u.ownCommitted = time.Time{}
	u.phases[PhaseDrain].observe(d)
	for i := len(u.history) - 1; i >= 0; i-- {
		if h := &u.history[i]; h.Generation == r.gen && h.Outcome == OutcomeCommitted {
			h.setPhase(PhaseDrain, d)
			break
		}
	}
}

func (u *upgrades) push(rec Upgrade, n int) {
	u.history = append(u.history, rec)
	u.trim(n)
}

// rollbackReason is the label of a rollback's cause.
func rollbackReason(err error) string {
	for _, r := range []struct {
		err   error
		label string
	}{
		{upgrader.ErrSpawn, "spawn"},
		{upgrader.ErrExited, "exited"},
		{upgrader.ErrTimeout, "timeout"},
		{upgrader.ErrUnhealthy, "unhealthy"},
		{upgrader.ErrPIDFile, "pid_file"},
		{upgrader.ErrStopped, "stopped"},
		{upgrader.ErrCanceled, "canceled"},
	} {
		if errors.Is(err, r.err) {
			return r.label
		}
	}
	return "other"
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Upgrade is one upgrade, as Status reports it.
type Upgrade struct {
	// Generation is the number of the new generation.
	Generation int `json:"generation"`
	// PID of the new generation's process, once known.
	PID int `json:"pid,omitempty"`
	// Triggered is when the upgrade began, Ended when it committed or
	// was rolled back.
	Triggered time.Time `json:"triggered"`
	Ended     time.Time `json:"ended,omitzero"`
	// Outcome is OutcomeCommitted or OutcomeRolledBack; empty while in
	// progress.
	Outcome string `json:"outcome,omitempty"`
	// Phase is the phase under way, for an upgrade in progress, or the
	// one it failed in (upgrader.Phase's name), for a rollback.
	Phase string `json:"phase,omitempty"`
	// Reason labels a rollback's cause (spawn, exited, timeout, unhealthy,
	// pid_file, stopped, canceled, other); Error is its full text.
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
	// Phases are the phases completed, in order, with their durations.
	Phases []Phase `json:"phases"`
	// Seconds is the whole upgrade, trigger to commit or rollback.
	Seconds float64 `json:"seconds,omitempty"`
	// Note says what happened after: the new generation died while the
	// old one drained.
	Note string `json:"note,omitempty"`
}

// Phase is one phase of an Upgrade.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

func (u *Upgrade) setPhase(name string, d time.Duration) {
	d = max(d, 0)
	for i := range u.Phases {
		if u.Phases[i].Name == name {
			u.Phases[i].Seconds = d.Seconds()
			return
		}
	}
	u.Phases = append(u.Phases, Phase{Name: name, Seconds: d.Seconds()})
	rank := func(n string) int {
		for i, p := range phaseOrder {
			if p == n {
				return i
			}
		}
		return len(phaseOrder)
	}
	for i := len(u.Phases) - 1; i > 0 && rank(u.Phases[i].Name) < rank(u.Phases[i-1].Name); i-- {
		u.Phases[i], u.Phases[i-1] = u.Phases[i-1], u.Phases[i]
	}
}

func (u *Upgrade) phaseOK(name string) (time.Duration, bool) {
	for _, p := range u.Phases {
		if p.Name == name {
			return time.Duration(p.Seconds * float64(time.Second)), true
		}
	}
	return 0, false
}

func (u *Upgrade) phase(name string) time.Duration {
	d, _ := u.phaseOK(name)
	return d
}

func (u *Upgrade) end(outcome string, at time.Time, total time.Duration) {
	u.Outcome, u.Ended, u.Seconds = outcome, at, total.Seconds()
	if outcome == OutcomeCommitted {
		u.Phase = ""
	}
}

// clone copies u deeply enough for a Status.
func (u Upgrade) clone() Upgrade {
	u.Phases = append([]Phase{}, u.Phases...) // [] in JSON, never null
	return u
}
