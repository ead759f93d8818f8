package metrics_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/metrics"
	"github.com/handoff-go/handoff/upgrader"
)

// valueOf returns the value of the first metric called name whose labels
// include the pairs given (a histogram's sample count), or -1 if none.
func valueOf(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue metric
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

// get serves a GET of path on h and returns the body; the status must be 200.
func get(t testing.TB, h http.Handler, path string) string {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	res := w.Result()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", b)
	return string(b)
}

// playUpgrade plays, from the old generation's side, an upgrade rolled
// back and one committed.
func playUpgrade(rec *metrics.Recorder) {
	now := time.Now()
	ev := func(kind upgrader.EventKind, d time.Duration, pid int, err error) {
		rec.OnUpgraderEvent(upgrader.Event{Kind: kind, Time: now.Add(d), Duration: d, Generation: 2, PID: pid, Err: err})
	}
	for i, commit := range []bool{false, true} {
		pid := 5000 + i
		ev(upgrader.EventTriggered, 0, os.Getpid(), nil)
		ev(upgrader.EventSpawned, 30*time.Millisecond, pid, nil)
		ev(upgrader.EventAccepting, 80*time.Millisecond, pid, nil)
		if commit {
			ev(upgrader.EventProbationPassed, 180*time.Millisecond, pid, nil)
			ev(upgrader.EventCommitted, 190*time.Millisecond, pid, nil)
		} else {
			ev(upgrader.EventRolledBack, 100*time.Millisecond, pid, &upgrader.UpgradeError{Phase: upgrader.PhaseProbation, Err: upgrader.ErrExited})
		}
	}
}
