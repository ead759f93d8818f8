package health_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/health"
)

// recorder collects a Policy's events.
type recorder struct {
	mu     sync.Mutex
	events []health.Event
}

func (r *recorder) on(e health.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// kinds returns the kinds seen, in order.
func (r *recorder) kinds() []health.EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ks []health.EventKind
	for _, e := range r.events {
		ks = append(ks, e.Kind)
	}
	return ks
}

func (r *recorder) count(k health.EventKind) int {
	n := 0
	for _, got := range r.kinds() {
		if got == k {
			n++
		}
	}
	return n
}

// probe sends GET path to h and returns the status and the body's line.
func probe(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w.Code, strings.TrimSpace(w.Body.String())
}

// states is what the three probes answer (status codes).
type states struct{ live, startup, ready int }

func probes(t *testing.T, h http.Handler) states {
	t.Helper()
	var s states
	s.live, _ = probe(t, h, health.PathLive)
	s.startup, _ = probe(t, h, health.PathStartup)
	s.ready, _ = probe(t, h, health.PathReady)
	return s
}

const (
	ok  = http.StatusOK
	bad = http.StatusServiceUnavailable
)

// TestPhases walks a Policy through every phase and checks each probe's
// answer in each, with the readiness flip off (the default) and on.
func TestPhases(t *testing.T) {
	for _, flip := range []bool{false, true} {
		t.Run(map[bool]string{false: "flip off", true: "flip on"}[flip], func(t *testing.T) {
			var checkErr atomic.Pointer[error]
			drained := make(chan struct{})
			var rec recorder
			p := health.New(health.Options{
				Ready: func(context.Context) error {
					if e := checkErr.Load(); e != nil {
						return *e
					}
					return nil
				},
				ShutdownDelay:  100 * time.Millisecond,
				NotReadyOnStop: flip,
				Drain:          func() { close(drained) },
				OnEvent:        rec.on,
			})
			defer p.Close()
			h := p.Handler()

			assert.Equal(t, health.PhaseStarting, p.Phase())
			assert.Equal(t, states{ok, bad, bad}, probes(t, h), "starting")

			p.Started()
			assert.Equal(t, health.PhaseServing, p.Phase())
			assert.Equal(t, states{ok, ok, ok}, probes(t, h), "serving")
			broken := errors.New("database unreachable")
			checkErr.Store(&broken)
			code, body := probe(t, h, health.PathReady)
			assert.Equal(t, bad, code)
			assert.Equal(t, "not ready: database unreachable", body, "the check's error is the answer")
			checkErr.Store(nil)

			cause := errors.New("SIGTERM")
			p.Stop(cause)
			assert.Equal(t, health.PhaseDelaying, p.Phase())
			assert.Equal(t, cause, p.Cause())
			want := states{ok, ok, ok}
			if flip {
				want.ready = bad
			}
			assert.Equal(t, want, probes(t, h), "delaying")
			if flip {
				_, body := probe(t, h, health.PathReady)
				assert.Equal(t, "not ready: delaying: SIGTERM", body)
			}

			select {
			case <-drained:
			case <-time.After(10 * time.Second):
				t.Fatal("Drain was not called after the delay")
			}
			assert.Equal(t, health.PhaseDraining, p.Phase())
			assert.Equal(t, want, probes(t, h), "draining")

			p.Drained()
			assert.Equal(t, health.PhaseStopped, p.Phase())
			assert.Equal(t, states{ok, ok, bad}, probes(t, h), "stopped: live until the process exits")
			select {
			case <-p.Done():
			default:
				t.Fatal("Done is not closed after Drained")
			}
			assert.Equal(t, []health.EventKind{health.EventServing, health.EventStopping, health.EventDraining, health.EventDrained}, rec.kinds())
			rec.mu.Lock()
			assert.GreaterOrEqual(t, rec.events[2].Duration, 100*time.Millisecond, "draining: the delay served")
			assert.Equal(t, 100*time.Millisecond, rec.events[1].Delay)
			rec.mu.Unlock()
		})
	}
}

// TestStopWhileStarting: a process that is not in charge has no load
// balancer to wait for: its drain begins at once.
func TestStopWhileStarting(t *testing.T) {
	var drains atomic.Int32
	p := health.New(health.Options{ShutdownDelay: time.Hour, Drain: func() { drains.Add(1) }})
	defer p.Close()
	p.Stop(errors.New("stop"))
	assert.Equal(t, health.PhaseDraining, p.Phase())
	assert.EqualValues(t, 1, drains.Load())
	p.Started()
	assert.Equal(t, health.PhaseDraining, p.Phase(), "no way back after Stop")
}

// TestHandOverThenStop: a generation that handed over drains without a
// delay; a Stop then makes its drain a final one (Drain is called), and a
// stopped generation does not serve again when its successor dies.
func TestHandOverThenStop(t *testing.T) {
	var drains atomic.Int32
	var rec recorder
	p := health.New(health.Options{ShutdownDelay: time.Hour, Drain: func() { drains.Add(1) }, OnEvent: rec.on})
	defer p.Close()
	p.Started()
	p.Draining() // the successor committed
	assert.Equal(t, health.PhaseDraining, p.Phase())
	assert.Zero(t, drains.Load(), "the program began this drain")
	p.Started() // the successor died: serving again
	assert.Equal(t, health.PhaseServing, p.Phase())
	p.Draining()
	p.Stop(errors.New("SIGTERM"))
	assert.Equal(t, health.PhaseDraining, p.Phase(), "no delay during a drain")
	assert.EqualValues(t, 1, drains.Load())
	p.Started()
	assert.Equal(t, health.PhaseDraining, p.Phase(), "no way back after Stop")
	p.Stop(errors.New("again"))
	assert.EqualValues(t, 1, drains.Load(), "Stop is idempotent")
	assert.Equal(t, 2, rec.count(health.EventServing))
	assert.Equal(t, 2, rec.count(health.EventDraining))
}

// TestImmediateDrainCancelsDelay: Draining during the delay (an immediate
// stop) ends the delay; Drain is not called.
func TestImmediateDrainCancelsDelay(t *testing.T) {
	var drains atomic.Int32
	p := health.New(health.Options{ShutdownDelay: 50 * time.Millisecond, Drain: func() { drains.Add(1) }})
	defer p.Close()
	p.Started()
	p.Stop(errors.New("SIGTERM"))
	p.Draining()
	time.Sleep(200 * time.Millisecond)
	assert.Zero(t, drains.Load())
	assert.Equal(t, health.PhaseDraining, p.Phase())
}

// TestClose stops a delay: Drain is never called, and Stop does nothing
// after it.
func TestClose(t *testing.T) {
	var drains atomic.Int32
	p := health.New(health.Options{ShutdownDelay: 50 * time.Millisecond, Drain: func() { drains.Add(1) }})
	p.Started()
	p.Stop(errors.New("SIGTERM"))
	p.Close()
	p.Close()
	time.Sleep(200 * time.Millisecond)
	assert.Zero(t, drains.Load())

	q := health.New(health.Options{Drain: func() { drains.Add(1) }})
	q.Close()
	q.Stop(errors.New("after Close"))
	assert.Zero(t, drains.Load())
	assert.Nil(t, q.Cause())
}

// TestPreStopTwice: the kubelet's preStop hook called twice (and at once)
// starts one termination; both calls return once the drain is over.
func TestPreStopTwice(t *testing.T) {
	var drains atomic.Int32
	var rec recorder
	var p *health.Policy
	p = health.New(health.Options{
		ShutdownDelay: 100 * time.Millisecond,
		Drain: func() {
			drains.Add(1)
			go func() { // the program's drain
				time.Sleep(50 * time.Millisecond)
				p.Drained()
			}()
		},
		OnEvent: rec.on,
	})
	defer p.Close()
	p.Started()
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()

	start := time.Now()
	type answer struct {
		code int
		body string
		took time.Duration
		err  error
	}
	answers := make(chan answer, 2)
	for i := range 2 {
		if i == 1 { // the second while the first waits
			require.Eventually(t, func() bool { return rec.count(health.EventPreStop) == 1 }, 10*time.Second, time.Millisecond)
		}
		go func() {
			resp, err := http.Get(srv.URL + health.PathPreStop)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- answer{resp.StatusCode, strings.TrimSpace(string(b)), time.Since(start), nil}
		}()
	}
	for range 2 {
		a := <-answers
		require.NoError(t, a.err)
		assert.Equal(t, ok, a.code)
		assert.Equal(t, "drained", a.body)
		assert.GreaterOrEqual(t, a.took, 150*time.Millisecond, "returned before the drain was over")
	}
	assert.EqualValues(t, 1, drains.Load(), "one drain")
	assert.Equal(t, 2, rec.count(health.EventPreStop))
	assert.Equal(t, 1, rec.count(health.EventStopping))
	assert.Equal(t, 1, rec.count(health.EventDraining))
	assert.ErrorIs(t, p.Cause(), health.ErrPreStop)

	// A third call, once stopped, returns at once.
	code, body := probe(t, p.Handler(), health.PathPreStop)
	assert.Equal(t, ok, code)
	assert.Equal(t, "drained", body)
	srv.CloseClientConnections()
}

// TestPreStopDeadline: a drain that never ends does not hold the preStop
// call past ShutdownDelay + DrainTimeout + PreStopSlack.
func TestPreStopDeadline(t *testing.T) {
	p := health.New(health.Options{ShutdownDelay: 50 * time.Millisecond, DrainTimeout: 100 * time.Millisecond})
	defer p.Close()
	p.Started()
	start := time.Now()
	code, body := probe(t, p.Handler(), health.PathPreStop)
	took := time.Since(start)
	assert.Equal(t, bad, code)
	assert.Contains(t, body, "deadline")
	assert.GreaterOrEqual(t, took, 150*time.Millisecond+health.PreStopSlack)
	assert.Less(t, took, 5*time.Second)
}

// TestGracePeriod: New warns when the delay and the drain timeout do not
// fit in the grace period, and only then.
func TestGracePeriod(t *testing.T) {
	for _, c := range []struct {
		delay, drain, grace time.Duration
		warn                bool
	}{
		{5 * time.Second, 20 * time.Second, 30 * time.Second, false},
		{5 * time.Second, 20 * time.Second, 25 * time.Second, true},
		{10 * time.Second, 30 * time.Second, 30 * time.Second, true},
		{0, 0, 30 * time.Second, true}, // the default drain timeout is 30 s
		{0, 0, 31 * time.Second, false},
		{time.Minute, time.Minute, 0, false}, // no grace period: no check
	} {
		var log bytes.Buffer
		var rec recorder
		p := health.New(health.Options{ShutdownDelay: c.delay, DrainTimeout: c.drain, GracePeriod: c.grace,
			Logger: slog.New(slog.NewJSONHandler(&log, nil)), OnEvent: rec.on})
		p.Close()
		if !c.warn {
			assert.Empty(t, rec.kinds(), "%+v", c)
			assert.Empty(t, log.String(), "%+v", c)
			continue
		}
		require.Equal(t, []health.EventKind{health.EventGracePeriod}, rec.kinds(), "%+v", c)
		assert.ErrorIs(t, rec.events[0].Err, health.ErrGracePeriod)
		var r map[string]any
		require.NoError(t, json.Unmarshal(log.Bytes(), &r), log.String())
		assert.Equal(t, "WARN", r["level"])
		assert.Equal(t, "health: grace period too short", r["msg"])
		assert.Contains(t, r["error"], c.grace.String())
	}
}

// TestWrapHTTP1: during the delay, and only then, an HTTP/1 response says
// Connection: close and the server closes the connection after it.
func TestWrapHTTP1(t *testing.T) {
	for _, keep := range []bool{false, true} {
		p := health.New(health.Options{ShutdownDelay: time.Hour, KeepAliveDuringDelay: keep})
		srv := httptest.NewServer(p.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hi\n")
		})))
		get := func() *http.Response {
			resp, err := srv.Client().Get(srv.URL)
			require.NoError(t, err)
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp
		}
		p.Started()
		assert.False(t, get().Close, "serving: keep-alive")
		p.Stop(errors.New("SIGTERM"))
		resp := get()
		assert.Equal(t, !keep, resp.Close, "delaying (KeepAliveDuringDelay %v): Connection: close", keep)
		p.Close()
		srv.Close()
	}
}
