package metrics

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoff-go/handoff/bundle"
	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/plugin"
	"github.com/handoff-go/handoff/reload"
)

// Kind is the kind of a hot-swapped component (the label kind).
type Kind string

// The kinds of component.
const (
	KindBundle Kind = "bundle"
	KindPlugin Kind = "plugin"
	KindFlags  Kind = "flags"
)

type componentKey struct {
	kind Kind
	name string
}

// pluginManager is what the Recorder uses of a *plugin.Manager[T], for
// any T.
type pluginManager interface {
	Versions() []plugin.Version
	Rollback(ctx context.Context) (plugin.Version, error)
}

// component is a bundle, plugin or flag set made through the Recorder,
// and what its events said. Guarded by Recorder.mu, but evals.
type component struct {
	kind Kind
	name string

	swaps, failures, rollbacks uint64
	lastResult                 int // 1: the last load succeeded, -1: failed, 0: none yet
	lastSuccess                time.Time
	lastError                  string
	lastErrorAt                time.Time
	version, source            string
	seq                        uint64
	since                      time.Time

	bundle *bundle.Handler

	set   *flags.Set
	path  string
	evals *evalCounts

	plug                              pluginManager
	canary                            string
	canaryPercent                     float64
	promotions, canaryRollbacks       uint64
	crashes, restarts                 uint64
	lastCanaryReason, lastCanaryEnded string
}

// register adds a component; a second one of the same kind and name is a
// programming error, as a flag defined twice is.
func (r *Recorder) register(kind Kind, name string) *component {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := componentKey{kind, name}
	if _, dup := r.byName[k]; dup {
		panic(fmt.Sprintf("metrics: a %s named %q is registered already", kind, name))
	}
	c := &component{kind: kind, name: name}
	r.byName[k] = c
	r.comps = append(r.comps, c)
	return c
}

func (r *Recorder) unregister(c *component) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.byName, componentKey{c.kind, c.name})
	for i, x := range r.comps {
		if x == c {
			r.comps = append(r.comps[:i:i], r.comps[i+1:]...)
			break
		}
	}
}

// NewBundle is bundle.New(path, opts) with the bundle's swaps, failures
// and rollbacks recorded under name (the label name, kind="bundle") and its
// versions in the status. opts.OnEvent, if set, is still called, after the
// Recorder. name must be unique among the Recorder's bundles.
func (r *Recorder) NewBundle(name, path string, opts bundle.Options) *bundle.Handler {
	c := r.register(KindBundle, name)
	opts.OnEvent = r.onReload(c, opts.OnEvent)
	h := bundle.New(path, opts)
	r.mu.Lock()
	c.bundle = h
	r.mu.Unlock()
	return h
}

// NewFlags is flags.New(reg, path, opts) with the values' swaps, failures
// and rollbacks recorded under name (kind="flags"), the evaluations counted
// by flag and variant (those of the keys opts.ExposureRate samples: all,
// by default), and every flag with its value in the status. opts.OnEvent
// and opts.OnExposure, if set, are still called, after the Recorder. name
// must be unique among the Recorder's flag sets.
//
// Counting an evaluation costs a map lookup and an atomic add, on top of
// the Exposure that flags builds once OnExposure is set (see the package
// documentation for the figures); it allocates nothing.
func (r *Recorder) NewFlags(name string, reg *flags.Registry, path string, opts flags.Options) *flags.Set {
	evals := newEvalCounts(r.opts.MaxFlagSeries)
	for _, f := range reg.Flags() {
		for _, v := range f.Variants {
			evals.counter(f.Name, v)
		}
	}
	c := r.register(KindFlags, name)
	r.mu.Lock()
	c.evals = evals
	r.mu.Unlock()
	opts.OnEvent = r.onReload(c, opts.OnEvent)
	user := opts.OnExposure
	opts.OnExposure = func(x flags.Exposure) {
		evals.inc(x.Flag, x.Variant)
		if user != nil {
			user(x)
		}
	}
	set := flags.New(reg, path, opts)
	r.mu.Lock()
	c.set, c.path = set, path
	r.mu.Unlock()
	return set
}

// NewPlugin is plugin.New(ctx, opts) with the plugin's swaps, refusals,
// rollbacks, canaries, crashes and restarts recorded under name
// (kind="plugin"), its calls counted by version and outcome, and its
// versions in the status. opts.OnEvent, if set, is still called, after the
// Recorder. name must be unique among the Recorder's plugins. If New fails,
// nothing stays registered.
func NewPlugin[T any](ctx context.Context, r *Recorder, name string, opts plugin.Options[T]) (*plugin.Manager[T], error) {
	c := r.register(KindPlugin, name)
	opts.OnEvent = r.onPlugin(c, opts.OnEvent)
	m, err := plugin.New(ctx, opts)
	if err != nil {
		r.unregister(c)
		return nil, err
	}
	r.mu.Lock()
	c.plug = m
	r.mu.Unlock()
	return m, nil
}

// onReload records the reload.Events of a bundle's or a flag set's Value.
func (r *Recorder) onReload(c *component, next func(reload.Event)) func(reload.Event) {
	return func(e reload.Event) {
		r.mu.Lock()
		changed := true
		switch e.Kind {
		case reload.EventSwap:
			c.setVersion(e.ID, e.Source, e.Seq, e.Time)
			if c.kind == KindFlags && e.Seq == 1 && e.Source == "defaults" {
				break // the defaults a flags.Set starts with: not a load
			}
			c.swapped(e.Time)
		case reload.EventRollback:
			c.rollbacks++
			c.setVersion(e.ID, e.Source, e.Seq, e.Time)
		case reload.EventFailure:
			c.failed(e.Err, e.Time)
		default:
			changed = false
		}
		if changed {
			r.notifyLocked()
		}
		r.mu.Unlock()
		if next != nil {
			next(e)
		}
	}
}

// onPlugin records the plugin.Events of a Manager.
func (r *Recorder) onPlugin(c *component, next func(plugin.Event)) func(plugin.Event) {
	return func(e plugin.Event) {
		r.mu.Lock()
		changed := true
		switch e.Kind {
		case plugin.EventSwapped:
			c.swapped(e.Time)
			c.setVersion(e.Version, "", 0, e.Time)
			c.canary, c.canaryPercent = "", 0
		case plugin.EventRefused:
			c.failed(e.Err, e.Time)
		case plugin.EventCanaryStarted:
			c.swapped(e.Time)
			c.canary, c.canaryPercent = e.Version, e.Percent
		case plugin.EventCanaryPromoted:
			c.promotions++
			c.setVersion(e.Version, "", 0, e.Time)
			c.canary, c.canaryPercent = "", 0
			c.lastCanaryEnded, c.lastCanaryReason = "promoted "+e.Version, e.Reason
		case plugin.EventCanaryRolledBack:
			c.canaryRollbacks++
			c.rollbacks++
			c.canary, c.canaryPercent = "", 0
			c.lastCanaryEnded, c.lastCanaryReason = "rolled back "+e.Version, e.Reason
		case plugin.EventRolledBack:
			c.rollbacks++
			c.setVersion(e.Version, "", 0, e.Time)
		case plugin.EventCrashed:
			c.crashes++
		case plugin.EventRestarted:
			c.restarts++
		default:
			changed = false
		}
		if changed {
			r.notifyLocked()
		}
		r.mu.Unlock()
		if next != nil {
			next(e)
		}
	}
}

// swapped records a successful load or swap at at.
func (c *component) swapped(at time.Time) {
	c.swaps++
	c.lastResult, c.lastSuccess = 1, at
}

// failed records a refused load or swap.
func (c *component) failed(err error, at time.Time) {
	c.failures++
	c.lastResult = -1
	c.lastError, c.lastErrorAt = errText(err), at
}

func (c *component) setVersion(id, source string, seq uint64, at time.Time) {
	c.version, c.seq, c.since = id, seq, at
	if source != "" {
		c.source = source
	}
}

// Rollback makes the previous version of the bundle, plugin or flag set
// called name current again: Value().Rollback() of a bundle or a flag set
// (until the next load of its files), Rollback of a plugin. It returns the
// version now current, or ErrUnknown for a kind and name that were not
// made through the Recorder, or the component's error (reload's
// ErrNotRetained, plugin's ErrNoPrevious, ...).
func (r *Recorder) Rollback(ctx context.Context, kind Kind, name string) (string, error) {
	r.mu.Lock()
	c := r.byName[componentKey{kind, name}]
	var h *bundle.Handler
	var set *flags.Set
	var plug pluginManager
	if c != nil {
		h, set, plug = c.bundle, c.set, c.plug
	}
	r.mu.Unlock()
	switch {
	case h != nil:
		v, err := h.Value().Rollback()
		if err != nil {
			return "", err
		}
		return v.ID, nil
	case set != nil:
		v, err := set.Value().Rollback()
		if err != nil {
			return "", err
		}
		return v.ID, nil
	case plug != nil:
		v, err := plug.Rollback(ctx)
		if err != nil {
			return "", err
		}
		return v.ID, nil
	}
	return "", fmt.Errorf("%w: %s %q", ErrUnknown, kind, name)
}

// FlagSet returns the flag set NewFlags made under name and the path of
// its values file (for package admin, which changes rollouts there).
func (r *Recorder) FlagSet(name string) (set *flags.Set, path string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.byName[componentKey{KindFlags, name}]
	if c == nil || c.set == nil {
		return nil, "", false
	}
	return c.set, c.path, true
}

// evalCounts counts evaluations by flag and variant without a lock: the
// map of counters is replaced as a whole when a pair is added (rarely: the
// pairs of the registry are added up front).
type evalCounts struct {
	m        atomic.Pointer[map[evalKey]*atomic.Uint64]
	mu       sync.Mutex // serialises additions
	max      int
	overflow atomic.Uint64
}

type evalKey struct{ flag, variant string }

func newEvalCounts(max int) *evalCounts {
	e := &evalCounts{max: max}
	m := map[evalKey]*atomic.Uint64{}
	e.m.Store(&m)
	return e
}

func (e *evalCounts) inc(flag, variant string) {
	if c := (*e.m.Load())[evalKey{flag, variant}]; c != nil {
		c.Add(1)
		return
	}
	if c := e.counter(flag, variant); c != nil {
		c.Add(1)
		return
	}
	e.overflow.Add(1)
}

// counter returns the counter of a pair, adding it if the bound allows;
// nil beyond the bound.
func (e *evalCounts) counter(flag, variant string) *atomic.Uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := *e.m.Load()
	k := evalKey{flag, variant}
	if c := old[k]; c != nil {
		return c
	}
	if len(old) >= e.max {
		return nil
	}
	m := make(map[evalKey]*atomic.Uint64, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	c := new(atomic.Uint64)
	m[k] = c
	e.m.Store(&m)
	return c
}

// snapshot returns the counts by flag, then variant.
func (e *evalCounts) snapshot() map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	for k, c := range *e.m.Load() {
		if out[k.flag] == nil {
			out[k.flag] = map[string]uint64{}
		}
		out[k.flag][k.variant] = c.Load()
	}
	return out
}
