package plugin

import (
	"encoding/hex"
	"os"
	"strconv"
	"time"
)

// State is where a version is in its life.
type State string

// The states of a Version.
const (
	StateStarting State = "starting" // being staged, started, checked
	StateServing  State = "serving"  // the stable version
	StateCanary   State = "canary"   // taking Options.Canary.Percent of the keys
	StateRetired  State = "retired"  // replaced; its process drains and exits
	StateRefused  State = "refused"  // failed to load; see Err
)

// Version describes one binary the manager loaded, as Versions and the
// swap methods report it.
type Version struct {
	ID       string // "v<n>-<first 12 hex digits of the sha256>", n counting the versions loaded
	SHA256   string // hex
	Source   string // the path it was loaded from
	Staged   string // the content-addressed copy that runs
	State    State
	PID      int // the last process started for it
	Restarts int // crash restarts

	Loaded  time.Time     // when loading began
	Serving time.Time     // when it first took calls (stable or canary)
	Retired time.Time     // when it was replaced
	Stage   time.Duration // copy and checksum
	Start   time.Duration // exec, handshake, dispense, health check, to the swap
	Err     error         // why it was refused

	Calls  int64 // calls of Call this version answered (fn ran on it)
	Errors int64 // of those, the ones that returned an error
}

// Versions returns the versions loaded, newest first, at most
// Options.History of them. Safe for concurrent use.
func (m *Manager[T]) Versions() []Version {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Version, 0, len(m.history))
	for i := len(m.history) - 1; i >= 0; i-- {
		out = append(out, m.history[i].snapshot())
	}
	return out
}

// Current returns the stable version and, during a canary, the canary
// version (ok reports whether there is one). After Close both are zero.
func (m *Manager[T]) Current() (stable, canary Version, ok bool) {
	l, acquired := m.val.Acquire()
	if !acquired {
		return Version{}, Version{}, false
	}
	defer l.Release()
	r := l.Value()
	stable = m.info(r.stable.v)
	if r.canary != nil {
		return stable, m.info(r.canary.v), true
	}
	return stable, Version{}, false
}

// newVersion returns the record of a load of path. It has no id until it
// is numbered: a load that finds the running binary leaves no trace.
func (m *Manager[T]) newVersion(path string) *version {
	return &version{source: path, info: Version{Source: path, State: StateStarting, Loaded: time.Now()}}
}

// number gives v the next id, "v<n>", if it has none. m.mu is held.
func (m *Manager[T]) number(v *version) {
	if v.id == "" {
		m.seq++
		v.id = "v" + strconv.Itoa(m.seq)
		v.info.ID = v.id
	}
}

// remember adds v to the history once its sha256 is known (so that
// unchanged reloads leave no trace), dropping the oldest records and the
// staged binaries only they used. m.mu is held; opMu is held.
func (m *Manager[T]) remember(v *version) {
	m.history = append(m.history, v)
	for len(m.history) > m.opts.History {
		old := m.history[0]
		m.history = m.history[1:]
		if old.staged == "" || m.inUse(old) {
			continue
		}
		_ = os.Remove(old.staged)
	}
}

// inUse reports whether a binary with old's sum is still needed: by a
// version in the history, or by the running or previous versions.
func (m *Manager[T]) inUse(old *version) bool {
	for _, h := range m.history {
		if h.sum == old.sum {
			return true
		}
	}
	if r := m.route; r != nil {
		if r.stable.v.sum == old.sum || (r.canary != nil && r.canary.v.sum == old.sum) {
			return true
		}
	}
	return m.prev != nil && m.prev.sum == old.sum
}

// recordStaged names v after its sum and adds it to the history. v is
// staged.
func (m *Manager[T]) recordStaged(v *version, stage time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.number(v)
	v.info.SHA256 = hex.EncodeToString(v.sum[:])
	v.info.Staged = v.staged
	v.id += "-" + v.info.SHA256[:12]
	v.info.ID = v.id
	v.info.Stage = stage
	m.remember(v)
}

// refuse records and reports v refused at phase, took after its load
// began, and returns the *LoadError.
func (m *Manager[T]) refuse(v *version, phase Phase, err error, took time.Duration) error {
	m.mu.Lock()
	m.number(v)
	m.mu.Unlock()
	le := v.loadError(phase, err)
	m.setRefused(v, le)
	m.emit(Event{Kind: EventRefused, Version: v.id, Path: v.source, Err: le, Duration: took})
	return le
}

func (m *Manager[T]) setRefused(v *version, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v.info.State = StateRefused
	v.info.Err = err
	v.info.Start = time.Since(v.info.Loaded) - v.info.Stage
	if !m.recorded(v) {
		m.remember(v)
	}
}

func (m *Manager[T]) recorded(v *version) bool {
	for _, h := range m.history {
		if h == v {
			return true
		}
	}
	return false
}

func (m *Manager[T]) setState(v *version, s State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	switch s {
	case StateServing, StateCanary:
		if v.info.Serving.IsZero() {
			v.info.Serving = now
			v.info.Start = now.Sub(v.info.Loaded) - v.info.Stage
		}
		v.info.Retired = time.Time{}
	case StateRetired:
		// A restart retires the crashed process, not the version.
		if r := m.route; r != nil && (r.stable.v == v || (r.canary != nil && r.canary.v == v)) {
			return
		}
		v.info.Retired = now
	}
	v.info.State = s
}

func (m *Manager[T]) info(v *version) Version {
	m.mu.Lock()
	defer m.mu.Unlock()
	return v.snapshot()
}

// snapshot is v's record with its call counts. Manager.mu is held.
func (v *version) snapshot() Version {
	info := v.info
	info.Calls, info.Errors = v.calls.Load(), v.errs.Load()
	return info
}
