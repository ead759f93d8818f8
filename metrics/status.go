package metrics

import (
	"maps"
	"slices"
	"time"

	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/listener"
	"github.com/handoff-go/handoff/plugin"
	"github.com/handoff-go/handoff/reload"
)

// Status is what the Recorder knows, at one instant, in the shape package
// admin serves as JSON: the process, its upgrades (the last ones with each
// phase's timing and outcome), its listeners and their connections, and
// each bundle, plugin and flag set with its versions. Every field is a copy.
type Status struct {
	Time       time.Time     `json:"time"`
	Process    Process       `json:"process"`
	Upgrades   Upgrades      `json:"upgrades"`
	Listeners  []Listener    `json:"listeners"`
	Drains     Drains        `json:"drains"`
	Signals    []SignalCount `json:"signals"`
	Components []Component   `json:"components"`
}

// Process is the process that answers.
type Process struct {
	PID        int       `json:"pid"`
	Generation int       `json:"generation"`
	Started    time.Time `json:"started"`
	// State is one of StateStarting, StateProbation, StateServing,
	// StateUpgrading, StateHandedOver, StateDraining, StateStopping.
	State string `json:"state"`
	Build Build  `json:"build"`
}

// Build describes the running binary (runtime/debug.ReadBuildInfo).
type Build struct {
	GoVersion string `json:"go_version"`
	Path      string `json:"path,omitempty"`
	Version   string `json:"version,omitempty"`
	Revision  string `json:"revision,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
}

// Upgrades are the counts and the last upgrades. The counts and History
// continue across generations (see the package documentation).
type Upgrades struct {
	Committed  uint64            `json:"committed"`
	RolledBack uint64            `json:"rolled_back"`
	Reasons    map[string]uint64 `json:"rollback_reasons"`
	// LastSuccess is when the last upgrade committed; LastOutcome is the
	// last one's outcome ("" before any).
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastOutcome string    `json:"last_outcome,omitempty"`
	// InProgress is the upgrade under way: started by this generation, or
	// the one that started it, until it commits.
	InProgress *Upgrade `json:"in_progress,omitempty"`
	// History holds the last Options.History upgrades, newest first.
	History []Upgrade `json:"history"`
}

// Listener is one tracked listener and its connections.
type Listener struct {
	Addr     string `json:"addr"`
	Network  string `json:"network"`
	Paused   bool   `json:"paused"`
	Active   int    `json:"active"`
	Idle     int    `json:"idle"`
	New      int    `json:"new"`
	Hijacked int    `json:"hijacked"`
	HTTP2    int    `json:"http2"`
	Accepted uint64 `json:"accepted"`
}

// Drains counts this process's finished drains and the connections they
// closed at their deadline.
type Drains struct {
	Finished uint64 `json:"finished"`
	Forced   uint64 `json:"forced"`
}

// SignalCount is how often a signal was received.
type SignalCount struct {
	Signal string `json:"signal"`
	Action string `json:"action"`
	Count  uint64 `json:"count"`
}

// Component is a bundle, plugin or flag set made through the Recorder.
type Component struct {
	Kind Kind   `json:"kind"`
	Name string `json:"name"`
	// Version is the current version's ID; Seq its number (bundles, flag
	// sets); Since when it became current.
	Version string    `json:"version"`
	Source  string    `json:"source,omitempty"`
	Seq     uint64    `json:"seq,omitempty"`
	Since   time.Time `json:"since,omitzero"`

	Swaps       uint64    `json:"swaps"`
	Failures    uint64    `json:"failures"`
	Rollbacks   uint64    `json:"rollbacks"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastFailed  bool      `json:"last_failed,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// CanRollback says whether Rollback has a version to return to.
	CanRollback bool `json:"can_rollback"`

	// History: the versions a bundle's or a flag set's Value remembers,
	// newest first.
	History []VersionRecord `json:"history,omitempty"`

	// Plugins: the canary, the versions loaded (newest first) with their
	// calls, and the counts of the canaries' ends, crashes and restarts.
	Canary          *Canary         `json:"canary,omitempty"`
	Versions        []PluginVersion `json:"versions,omitempty"`
	Promotions      uint64          `json:"promotions,omitempty"`
	CanaryRollbacks uint64          `json:"canary_rollbacks,omitempty"`
	LastCanary      string          `json:"last_canary,omitempty"`
	Crashes         uint64          `json:"crashes,omitempty"`
	Restarts        uint64          `json:"restarts,omitempty"`

	// Flag sets: every flag of the registry, its value and evaluations.
	Flags []Flag `json:"flags,omitempty"`
}

// VersionRecord is one version a Value remembers (reload.Record).
type VersionRecord struct {
	Seq      uint64    `json:"seq"`
	ID       string    `json:"id"`
	Source   string    `json:"source,omitempty"`
	Loaded   time.Time `json:"loaded"`
	Replaced time.Time `json:"replaced,omitzero"`
	Current  bool      `json:"current,omitempty"`
	Retained bool      `json:"retained,omitempty"`
}

// Canary is a plugin's running canary.
type Canary struct {
	Version string  `json:"version"`
	Percent float64 `json:"percent"`
	Calls   int64   `json:"calls"`
	Errors  int64   `json:"errors"`
}

// PluginVersion is one version of a plugin (plugin.Version).
type PluginVersion struct {
	ID       string    `json:"id"`
	State    string    `json:"state"`
	PID      int       `json:"pid,omitempty"`
	Restarts int       `json:"restarts,omitempty"`
	Calls    int64     `json:"calls"`
	Errors   int64     `json:"errors"`
	Loaded   time.Time `json:"loaded"`
	Serving  time.Time `json:"serving,omitzero"`
	Retired  time.Time `json:"retired,omitzero"`
	Error    string    `json:"error,omitempty"`
}

// Flag is one flag of a flag set.
type Flag struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Description string   `json:"description"`
	Owner       string   `json:"owner"`
	RemoveBy    string   `json:"remove_by"`
	Expired     bool     `json:"expired,omitempty"`
	Variants    []string `json:"variants"`
	Default     string   `json:"default"`
	// Value is what the values file sets (compact JSON), "" when it
	// leaves the flag at its default.
	Value string `json:"value,omitempty"`
	// Evaluations counts the evaluations by variant.
	Evaluations map[string]uint64 `json:"evaluations"`
}

// Status returns what the Recorder knows now. Safe for concurrent use; it
// reads the listeners, plugins and flag sets outside the Recorder's lock.
func (r *Recorder) Status() Status {
	now := time.Now()
	r.mu.Lock()
	s := Status{
		Time: now,
		Process: Process{PID: r.pid, Generation: r.gen, Started: r.started,
			State: r.state, Build: r.build},
		Upgrades: Upgrades{
			Committed:   r.up.outcomes[OutcomeCommitted],
			RolledBack:  r.up.outcomes[OutcomeRolledBack],
			Reasons:     maps.Clone(r.up.reasons),
			LastSuccess: r.up.lastSuccess,
		},
		Drains:  Drains{Finished: r.drains, Forced: r.forced},
		Signals: []SignalCount{},
	}
	switch r.up.lastResult {
	case 1:
		s.Upgrades.LastOutcome = OutcomeCommitted
	case -1:
		s.Upgrades.LastOutcome = OutcomeRolledBack
	}
	if c := r.up.cur; c != nil {
		in := c.clone()
		s.Upgrades.InProgress = &in
	} else if o := r.up.own; o != nil {
		in := o.clone()
		s.Upgrades.InProgress = &in
	}
	s.Upgrades.History = make([]Upgrade, 0, len(r.up.history))
	for i := len(r.up.history) - 1; i >= 0; i-- {
		s.Upgrades.History = append(s.Upgrades.History, r.up.history[i].clone())
	}
	for k, n := range r.signals {
		s.Signals = append(s.Signals, SignalCount{Signal: k.signal, Action: k.action, Count: n})
	}
	comps := make([]Component, len(r.comps))
	objs := make([]componentObjects, len(r.comps))
	for i, c := range r.comps {
		comps[i] = c.status()
		objs[i] = componentObjects{h: c.history(), plug: c.plug, set: c.set, evals: c.evals}
	}
	r.mu.Unlock()

	slices.SortFunc(s.Signals, func(a, b SignalCount) int {
		if a.Signal != b.Signal {
			if a.Signal < b.Signal {
				return -1
			}
			return 1
		}
		return 0
	})
	for _, l := range r.allListeners() {
		s.Listeners = append(s.Listeners, listenerStatus(l))
	}
	for i, o := range objs {
		comps[i].fill(o, now)
	}
	s.Components = comps
	return s
}

func listenerStatus(l *listener.Listener) Listener {
	c := l.Counts()
	return Listener{Addr: l.Addr().String(), Network: l.Addr().Network(), Paused: l.Paused(),
		Active: c.Active, Idle: c.Idle, New: c.New, Hijacked: c.Hijacked, HTTP2: c.HTTP2, Accepted: c.Accepted}
}

// status copies what the events said. Recorder.mu is held.
func (c *component) status() Component {
	out := Component{Kind: c.kind, Name: c.name, Version: c.version, Source: c.source, Seq: c.seq, Since: c.since,
		Swaps: c.swaps, Failures: c.failures, Rollbacks: c.rollbacks, LastSuccess: c.lastSuccess,
		LastFailed: c.lastResult < 0, LastError: c.lastError, LastErrorAt: c.lastErrorAt,
		Promotions: c.promotions, CanaryRollbacks: c.canaryRollbacks, Crashes: c.crashes, Restarts: c.restarts}
	if c.lastCanaryEnded != "" {
		out.LastCanary = c.lastCanaryEnded + ": " + c.lastCanaryReason
	}
	if c.canary != "" {
		out.Canary = &Canary{Version: c.canary, Percent: c.canaryPercent}
	}
	return out
}

// componentObjects are a component's objects, read under the Recorder's
// lock (the New functions set them there) and used outside it.
type componentObjects struct {
	h     reloadHistory
	plug  pluginManager
	set   *flags.Set
	evals *evalCounts
}

// fill adds what the component itself says: its history, versions, flags.
func (out *Component) fill(o componentObjects, now time.Time) {
	h, plug, set, evals := o.h, o.plug, o.set, o.evals
	if h != nil {
		for _, rec := range h.History() {
			out.History = append(out.History, VersionRecord{Seq: rec.Seq, ID: rec.ID, Source: rec.Source,
				Loaded: rec.LoadedAt, Replaced: rec.ReplacedAt, Current: rec.Current, Retained: rec.Retained})
			out.CanRollback = out.CanRollback || rec.Retained
		}
	}
	if plug != nil {
		out.fillPlugin(plug.Versions())
	}
	if set != nil {
		out.fillFlags(set, evals, now)
	}
}

// reloadHistory is the part of a reload.Value a Status reads.
type reloadHistory interface{ History() []reload.Record }

func (c *component) history() reloadHistory {
	switch {
	case c.bundle != nil:
		return c.bundle.Value()
	case c.set != nil:
		return c.set.Value()
	}
	return nil
}

func (out *Component) fillPlugin(vs []plugin.Version) {
	for _, v := range vs {
		pv := PluginVersion{ID: v.ID, State: string(v.State), PID: v.PID, Restarts: v.Restarts,
			Calls: v.Calls, Errors: v.Errors, Loaded: v.Loaded, Serving: v.Serving, Retired: v.Retired, Error: errText(v.Err)}
		out.Versions = append(out.Versions, pv)
		switch v.State {
		case plugin.StateCanary:
			if out.Canary != nil && out.Canary.Version == v.ID {
				out.Canary.Calls, out.Canary.Errors = v.Calls, v.Errors
			}
			out.CanRollback = true // Rollback aborts the canary
		case plugin.StateRetired:
			if !v.Serving.IsZero() {
				out.CanRollback = true // a version that served can serve again
			}
		case plugin.StateServing:
			if out.Version == "" {
				out.Version = v.ID
			}
		}
	}
}

func (out *Component) fillFlags(set *flags.Set, evals *evalCounts, now time.Time) {
	snap := set.Snapshot()
	defer snap.Release()
	vals := snap.Values()
	counts := evals.snapshot()
	for _, f := range set.Registry().Flags() {
		fl := Flag{Name: f.Name, Kind: f.Kind.String(), Description: f.Description, Owner: f.Owner,
			RemoveBy: f.RemoveBy, Expired: f.Expired(now), Variants: slices.Clone(f.Variants), Default: f.Default,
			Evaluations: map[string]uint64{}}
		if vals != nil {
			fl.Value, _ = vals.Raw(f.Name)
		}
		for _, v := range f.Variants {
			fl.Evaluations[v] = counts[f.Name][v]
		}
		out.Flags = append(out.Flags, fl)
	}
}
