package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/handoff-go/handoff/listener"
	"github.com/handoff-go/handoff/signal"
	"github.com/handoff-go/handoff/upgrader"
)

// Defaults for Options.
const (
	// DefaultNamespace prefixes every metric name: handoff_upgrades_total.
	DefaultNamespace = "handoff"
	// DefaultHistory is the number of upgrades the status remembers (and
	// carries to the next generation).
	DefaultHistory = 20
	// DefaultMaxFlagSeries bounds the flag and variant pairs whose
	// evaluations are counted, per flag set; evaluations beyond are counted
	// under flag="_other".
	DefaultMaxFlagSeries = 1000
)

// defaultBuckets are the buckets of the upgrade histograms, in seconds:
// from a probation-less commit on an idle machine (a few ms) to a drain
// that runs into a long DrainTimeout.
func defaultBuckets() []float64 {
	return []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}
}

// ErrUnknown is returned by Rollback for a kind and name that no New
// function registered.
var ErrUnknown = errors.New("metrics: no such component")

// Options configure a Recorder. The zero value means all defaults.
type Options struct {
	// Registerer is where the Recorder's collector is registered. Nil
	// means a registry of the Recorder's own, which also holds the Go
	// runtime and process collectors, served by Handler: nothing is
	// registered on prometheus.DefaultRegisterer unless it is passed here.
	Registerer prometheus.Registerer

	// Namespace prefixes every metric name. Default DefaultNamespace.
	Namespace string

	// History is the number of upgrades the status remembers and carries
	// to the next generation. Default DefaultHistory; negative: none.
	History int

	// Buckets are the upper bounds, in seconds, of the upgrade histograms.
	// Default: 5 ms to 120 s. A new generation whose buckets differ from
	// its parent's starts its histograms from zero.
	Buckets []float64

	// MaxFlagSeries bounds the flag and variant pairs counted per flag set
	// (see NewFlags). Default DefaultMaxFlagSeries; the bound cannot be
	// turned off.
	MaxFlagSeries int

	// Logger receives the Recorder's own records: a carried state it
	// could not read. Nil discards them.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	switch {
	case o.History == 0:
		o.History = DefaultHistory
	case o.History < 0:
		o.History = 0
	}
	if len(o.Buckets) == 0 {
		o.Buckets = defaultBuckets()
	} else {
		o.Buckets = slices.Clone(o.Buckets)
		slices.Sort(o.Buckets)
		o.Buckets = slices.Compact(o.Buckets)
	}
	if o.MaxFlagSeries <= 0 {
		o.MaxFlagSeries = DefaultMaxFlagSeries
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Recorder turns the events of handoff's packages into Prometheus metrics
// and into the Status that package admin serves. It holds no goroutine:
// events update it synchronously and cheaply (under a mutex, never
// blocking), and the connection counts are read from the listeners when
// Prometheus scrapes, so serving a request costs nothing more with a
// Recorder than without.
//
// All methods are safe for concurrent use.
type Recorder struct {
	opts    Options
	log     *slog.Logger
	gather  prometheus.Gatherer // nil when Options.Registerer is not one
	d       descs
	pid     int
	started time.Time
	build   Build

	mu        sync.Mutex
	changed   chan struct{}        // closed at the next change
	u         *upgrader.Upgrader   // set by Attach
	gen       int                  // this process's generation, 0 until known
	state     string               // see Process.State
	draining  bool                 // this generation drains
	listeners []*listener.Listener // added with AddListener
	up        upgrades             // upgrades.go
	drains    uint64               // drains this process finished
	forced    uint64               // connections they closed at the deadline
	signals   map[signalKey]uint64 // signals received
	comps     []*component         // components.go, in registration order
	byName    map[componentKey]*component
}

type signalKey struct{ signal, action string }

// New returns a Recorder registered on opts.Registerer (or on a registry
// of its own). It returns the registerer's error if the collector cannot
// be registered (another Recorder with the same Namespace is there).
func New(opts Options) (*Recorder, error) {
	opts = opts.withDefaults()
	r := &Recorder{
		opts:    opts,
		log:     opts.Logger,
		d:       newDescs(opts.Namespace),
		pid:     os.Getpid(),
		started: time.Now(),
		build:   readBuild(),
		changed: make(chan struct{}),
		state:   StateStarting,
		up:      newUpgrades(opts.Buckets),
		signals: map[signalKey]uint64{},
		byName:  map[componentKey]*component{},
	}
	reg := opts.Registerer
	if reg == nil {
		own := prometheus.NewRegistry()
		own.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg = own
	}
	if err := reg.Register(collector{r}); err != nil {
		return nil, fmt.Errorf("metrics: register: %w", err)
	}
	r.gather, _ = reg.(prometheus.Gatherer)
	return r, nil
}

// Handler serves the metrics in the Prometheus text (or OpenMetrics)
// format: those of the Recorder's own registry, or of Options.Registerer
// if it is also a prometheus.Gatherer (a *prometheus.Registry is).
// Otherwise it answers 404: serve the registry there is with promhttp.
func (r *Recorder) Handler() http.Handler {
	if r.gather == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "metrics: Options.Registerer is not a Gatherer; serve its registry with promhttp", http.StatusNotFound)
		})
	}
	return promhttp.HandlerFor(r.gather, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// Attach connects the Recorder to the process's Upgrader: it reads the
// generation, the listeners and the state the previous generation carried
// (the upgrade counters, histograms and history, see the package
// documentation), and registers the state part that carries them to the
// next one (upgrader.SaveStatePart: the program's SaveState is not
// touched). Its signature is handoff.Options.Setup's:
//
//	handoff.Options{Setup: rec.Attach, OnEvent: rec.OnUpgraderEvent, OnSignal: rec.OnSignalEvent}
//
// It returns an error if the Recorder is attached already.
func (r *Recorder) Attach(u *upgrader.Upgrader) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.u != nil {
		return errors.New("metrics: Attach: the Recorder is attached already")
	}
	r.u = u
	r.gen = u.Generation()
	if part := u.StatePart(r.partName()); part != nil {
		if err := r.up.adopt(part, r.gen, r.opts.History); err != nil {
			r.log.Warn("metrics: the previous generation's counters could not be read; they start from zero", "error", err)
		}
	}
	u.SaveStatePart(r.partName(), r.saveState)
	r.notifyLocked()
	return nil
}

// partName names the Recorder's part of the state blob.
func (r *Recorder) partName() string { return "handoff/metrics/" + r.opts.Namespace }

// Upgrader returns the Upgrader passed to Attach, or nil.
func (r *Recorder) Upgrader() *upgrader.Upgrader {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.u
}

// AddListener adds a tracked listener that no Upgrader made (those of the
// Upgrader passed to Attach are read from it) to the connection counts.
func (r *Recorder) AddListener(l *listener.Listener) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.listeners = append(r.listeners, l)
	r.notifyLocked()
}

// OnSignalEvent counts the signals received. Its signature is
// handoff.Options.OnSignal's (and signal.Options.OnEvent's).
func (r *Recorder) OnSignalEvent(e signal.Event) {
	if e.Kind != signal.EventReceived || e.Signal == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.signals[signalKey{e.Signal.String(), e.Action.String()}]++
	r.notifyLocked()
}

// Changed returns a channel that is closed at the next change the Recorder
// records (an upgrade's phase, a swap, a drain); take a new one after each.
// Connection counts and evaluations change without it.
func (r *Recorder) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

func (r *Recorder) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// allListeners returns the listeners to count: the Upgrader's and the
// added ones.
func (r *Recorder) allListeners() []*listener.Listener {
	r.mu.Lock()
	u, added := r.u, slices.Clone(r.listeners)
	r.mu.Unlock()
	if u == nil {
		return added
	}
	return append(u.Listeners(), added...)
}

// readBuild describes the running binary.
func readBuild() Build {
	b := Build{GoVersion: "unknown"}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.GoVersion = info.GoVersion
	b.Path, b.Version = info.Main.Path, info.Main.Version
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}
