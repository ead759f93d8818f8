package metrics_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/listener"
	"github.com/handoff-go/handoff/metrics"
	"github.com/handoff-go/handoff/signal"
	"github.com/handoff-go/handoff/upgrader"
)

// generation plays one generation's events into a Recorder of its own.
type generation struct {
	t   *testing.T
	rec *metrics.Recorder
	reg *prometheus.Registry
	now time.Time
}

func newGeneration(t *testing.T, carried []byte, gen int) *generation {
	t.Helper()
	reg := prometheus.NewRegistry()
	rec, err := metrics.New(metrics.Options{Registerer: reg})
	require.NoError(t, err)
	g := &generation{t: t, rec: rec, reg: reg, now: time.Now()}
	if carried != nil {
		require.NoError(t, rec.AdoptForTest(carried, gen))
	}
	return g
}

// at is the time d after the generation's start.
func (g *generation) at(d time.Duration) time.Time { return g.now.Add(d) }

func (g *generation) event(kind upgrader.EventKind, at, d time.Duration, gen, pid int, err error) {
	g.rec.OnUpgraderEvent(upgrader.Event{Kind: kind, Time: g.at(at), Duration: d, Generation: gen, PID: pid, Err: err})
}

func (g *generation) value(name string, labels ...string) float64 {
	g.t.Helper()
	return valueOf(g.t, g.reg, name, labels...)
}

// TestUpgradeContinuity plays an upgrade from both sides, with a rollback
// before it: the old generation counts and hands over, the new one
// adopts the counts, counts its own commit and observes the phases from its
// clock; a scraper of either sees upgrades_total rise by one, never fall.
func TestUpgradeContinuity(t *testing.T) {
	self := os.Getpid()
	old := newGeneration(t, nil, 0)
	old.event(upgrader.EventReady, 0, 0, 1, self, nil)
	old.event(upgrader.EventCommitted, 0, 0, 1, self, nil)
	assert.Equal(t, 1.0, old.value("handoff_generation"))
	assert.Equal(t, 0.0, old.value("handoff_upgrades_total", "outcome", "committed"))

	// A rollback: spawned after 50 ms, accepting at 120 ms, unhealthy at 300 ms.
	old.event(upgrader.EventTriggered, time.Second, 0, 2, self, nil)
	old.event(upgrader.EventSpawned, time.Second+50*time.Millisecond, 50*time.Millisecond, 2, 4001, nil)
	old.event(upgrader.EventAccepting, time.Second+120*time.Millisecond, 120*time.Millisecond, 2, 4001, nil)
	ue := &upgrader.UpgradeError{Generation: 2, PID: 4001, Phase: upgrader.PhaseProbation,
		Err: fmt.Errorf("%w: health check failed", upgrader.ErrUnhealthy)}
	old.event(upgrader.EventRolledBack, time.Second+300*time.Millisecond, 300*time.Millisecond, 2, 4001, ue)
	assert.Equal(t, 1.0, old.value("handoff_upgrades_total", "outcome", "rolled_back"))
	assert.Equal(t, 1.0, old.value("handoff_upgrade_rollbacks_total", "reason", "unhealthy"))
	assert.Equal(t, 0.0, old.value("handoff_last_upgrade_successful"))
	assert.Equal(t, 1.0, old.value("handoff_upgrade_phase_duration_seconds", "phase", "spawn"), "a rollback's completed phases")
	st := old.rec.Status()
	require.Len(t, st.Upgrades.History, 1)
	rb := st.Upgrades.History[0]
	assert.Equal(t, metrics.OutcomeRolledBack, rb.Outcome)
	assert.Equal(t, "probation", rb.Phase)
	assert.Equal(t, "unhealthy", rb.Reason)
	assert.Contains(t, rb.Error, "health check failed")
	assert.Equal(t, []metrics.Phase{{Name: "spawn", Seconds: 0.05}, {Name: "ready", Seconds: 0.07}, {Name: "probation", Seconds: 0.18}}, roundPhases(rb.Phases))

	// The upgrade that commits: the state is saved first.
	carried, err := old.rec.SaveStateForTest()
	require.NoError(t, err)
	old.event(upgrader.EventTriggered, 2*time.Second, 0, 2, self, nil)
	assert.Equal(t, 1.0, old.value("handoff_upgrade_in_progress"))
	assert.Equal(t, metrics.StateUpgrading, old.rec.Status().Process.State)

	young := newGeneration(t, carried, 2)
	young.now = old.now // one clock
	// The new process reached upgrader.New 40 ms after the trigger, accepted
	// 60 ms later, committed after a 100 ms probation; its parent exited
	// 500 ms after the commit. The carried trigger time is the save's: now.
	trig := young.rec.Status().Upgrades.InProgress
	require.NotNil(t, trig, "the upgrade that started the new generation is in progress")
	young.now = trig.Triggered
	young.event(upgrader.EventReady, 100*time.Millisecond, 60*time.Millisecond, 2, self, nil)
	assert.Equal(t, metrics.StateProbation, young.rec.Status().Process.State)
	assert.Equal(t, 1.0, young.value("handoff_upgrades_total", "outcome", "rolled_back"), "carried")
	assert.Equal(t, 0.0, young.value("handoff_upgrades_total", "outcome", "committed"))
	young.event(upgrader.EventCommitted, 200*time.Millisecond, 160*time.Millisecond, 2, self, nil)
	old.event(upgrader.EventCommitted, 2*time.Second+200*time.Millisecond, 200*time.Millisecond, 2, 4002, nil)

	for _, g := range []*generation{old, young} {
		assert.Equal(t, 1.0, g.value("handoff_upgrades_total", "outcome", "committed"), "both generations count the commit")
		assert.Equal(t, 1.0, g.value("handoff_last_upgrade_successful"))
	}
	assert.Equal(t, 2.0, young.value("handoff_generation"))
	assert.Equal(t, 0.0, young.value("handoff_upgrade_in_progress"))
	assert.Equal(t, 2.0, young.value("handoff_upgrade_phase_duration_seconds", "phase", "spawn"), "the rollback's and this one's")
	assert.Equal(t, 1.0, young.value("handoff_upgrade_phase_duration_seconds", "phase", "probation"))
	assert.Equal(t, 0.0, young.value("handoff_upgrade_phase_duration_seconds", "phase", "drain"))
	assert.Equal(t, 1.0, young.value("handoff_upgrade_duration_seconds", "outcome", "committed"))
	assert.Equal(t, 0.0, old.value("handoff_upgrade_duration_seconds", "outcome", "committed"), "the new generation observes it")
	young.event(upgrader.EventParentExited, 700*time.Millisecond, 0, 2, self, nil)
	assert.Equal(t, 1.0, young.value("handoff_upgrade_phase_duration_seconds", "phase", "drain"))

	st = young.rec.Status()
	require.Len(t, st.Upgrades.History, 2)
	up := st.Upgrades.History[0]
	assert.Equal(t, metrics.OutcomeCommitted, up.Outcome)
	assert.Equal(t, self, up.PID)
	assert.Equal(t, []metrics.Phase{{Name: "spawn", Seconds: 0.04}, {Name: "ready", Seconds: 0.06}, {Name: "probation", Seconds: 0.1}, {Name: "drain", Seconds: 0.5}}, roundPhases(up.Phases))
	assert.InDelta(t, 0.2, up.Seconds, 0.001)
	assert.Equal(t, metrics.OutcomeRolledBack, st.Upgrades.History[1].Outcome, "carried history")
	assert.Equal(t, metrics.StateHandedOver, old.rec.Status().Process.State)

	// The old generation drains, forcing one connection.
	old.event(upgrader.EventDrainStarted, 3*time.Second, 0, 1, self, nil)
	assert.Equal(t, 1.0, old.value("handoff_process_draining"))
	old.rec.OnUpgraderEvent(upgrader.Event{Kind: upgrader.EventDrainFinished, Time: old.at(4 * time.Second), Generation: 1,
		PID: self, Drain: listener.DrainStats{Conns: 3, Forced: 1}})
	assert.Equal(t, 1.0, old.value("handoff_drains_total"))
	assert.Equal(t, 1.0, old.value("handoff_drain_forced_connections_total"))
}

func roundPhases(ps []metrics.Phase) []metrics.Phase {
	out := make([]metrics.Phase, len(ps))
	for i, p := range ps {
		out[i] = metrics.Phase{Name: p.Name, Seconds: float64(time.Duration(p.Seconds*1e9).Round(time.Millisecond)) / 1e9}
	}
	return out
}

// TestCarriedStateRefused: a part this binary cannot read leaves the
// counters at zero; other buckets drop the histograms only.
func TestCarriedStateRefused(t *testing.T) {
	rec, err := metrics.New(metrics.Options{Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	assert.Error(t, rec.AdoptForTest([]byte("not json"), 2))
	assert.ErrorContains(t, rec.AdoptForTest([]byte(`{"v": 99}`), 2), "version 99")

	old := newGeneration(t, nil, 0)
	old.event(upgrader.EventTriggered, 0, 0, 2, os.Getpid(), nil)
	old.event(upgrader.EventSpawned, 10*time.Millisecond, 10*time.Millisecond, 2, 4001, nil)
	old.event(upgrader.EventRolledBack, 20*time.Millisecond, 20*time.Millisecond, 2, 4001,
		&upgrader.UpgradeError{Phase: upgrader.PhaseInit, Err: upgrader.ErrExited})
	carried, err := old.rec.SaveStateForTest()
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	other, err := metrics.New(metrics.Options{Registerer: reg, Buckets: []float64{1, 10}})
	require.NoError(t, err)
	require.NoError(t, other.AdoptForTest(carried, 3))
	assert.Equal(t, 1.0, valueOf(t, reg, "handoff_upgrades_total", "outcome", "rolled_back"), "counts are carried")
	assert.Equal(t, 0.0, valueOf(t, reg, "handoff_upgrade_phase_duration_seconds", "phase", "spawn"),
		"other buckets: the histograms start from zero")
	assert.Equal(t, 1.0, old.value("handoff_upgrade_phase_duration_seconds", "phase", "spawn"))
	assert.Nil(t, other.Status().Upgrades.InProgress, "the pending upgrade was generation 2's")
}

// TestSignalsAndNoGlobalRegistration: a Recorder without a Registerer
// registers nothing globally and serves its own registry; signals are
// counted.
func TestSignalsAndNoGlobalRegistration(t *testing.T) {
	before, err := prometheus.DefaultGatherer.Gather()
	require.NoError(t, err)
	rec, err := metrics.New(metrics.Options{})
	require.NoError(t, err)
	after, err := prometheus.DefaultGatherer.Gather()
	require.NoError(t, err)
	assert.Equal(t, len(before), len(after), "nothing registered on the default registry")

	rec.OnSignalEvent(signal.Event{Kind: signal.EventReceived, Action: signal.ActionUpgrade, Signal: syscall.SIGHUP})
	rec.OnSignalEvent(signal.Event{Kind: signal.EventStarted, Action: signal.ActionUpgrade, Signal: syscall.SIGHUP})
	body := get(t, rec.Handler(), "/metrics")
	assert.Contains(t, body, `handoff_signals_total{action="upgrade",signal="hangup"} 1`)
	assert.Contains(t, body, "go_goroutines", "the own registry has the Go collector")
	assert.Contains(t, body, `handoff_upgrades_total{outcome="committed"} 0`, "present from the start")

	_, err = metrics.New(metrics.Options{Registerer: prometheus.NewRegistry(), Namespace: "x"})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	_, err = metrics.New(metrics.Options{Registerer: reg})
	require.NoError(t, err)
	_, err = metrics.New(metrics.Options{Registerer: reg})
	assert.Error(t, err, "a second Recorder of one namespace on one registry")
	var are prometheus.AlreadyRegisteredError
	assert.True(t, errors.As(err, &are))
	assert.False(t, strings.Contains(body, "flag_evaluations_total"), "no flag set, no series")
}
