package signal_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/handoff-go/handoff/signal"
)

// waitTimeout bounds every wait. It is generous because the machine is
// shared; nothing asserts speed.
const waitTimeout = 20 * time.Second

func TestMain(m *testing.M) {
	setUpProcess() // unix: the helper child, and a guard against stray SIGHUPs
	goleak.VerifyTestMain(m)
}

// testSignal is a signal that only the dispatcher fed from a channel sees:
// it compares and names signals and never asks the OS for them, so the
// tests that use these run on every platform. They carry the names of the
// unix signals they stand for, so records read the same.
type testSignal string

func (s testSignal) Signal()        {}
func (s testSignal) String() string { return string(s) }

var (
	sigHUP  os.Signal = testSignal("hangup")
	sigUSR2 os.Signal = testSignal("user defined signal 2")
	sigTERM os.Signal = testSignal("terminated")
	sigINT  os.Signal = testSignal("interrupt")
	sigQUIT os.Signal = testSignal("quit")
)

// chanOptions are the unix defaults, spelled with test signals.
func chanOptions() signal.Options {
	return signal.Options{
		UpgradeSignals: []os.Signal{sigHUP},
		ReloadSignals:  []os.Signal{sigUSR2},
		StopSignals:    []os.Signal{sigTERM, sigINT},
		KillSignals:    []os.Signal{sigQUIT},
	}
}

// recorder collects the events of one Run.
type recorder struct {
	mu     sync.Mutex
	events []signal.Event
	ch     chan signal.Event
}

func newRecorder() *recorder {
	return &recorder{ch: make(chan signal.Event, 4096)}
}

func (r *recorder) OnEvent(e signal.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	select {
	case r.ch <- e:
	default:
		panic("recorder: event buffer full")
	}
}

// wait consumes events until one of kind (and of act, unless act is 0)
// arrives, and returns it.
func (r *recorder) wait(t testing.TB, kind signal.EventKind, act signal.Action) signal.Event {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case e := <-r.ch:
			if e.Kind == kind && (act == 0 || e.Action == act) {
				return e
			}
		case <-timer.C:
			t.Fatalf("no %v %v event within %v; events so far:\n%s", kind, act, waitTimeout, r)
		}
	}
}

// all returns a copy of the events so far.
func (r *recorder) all() []signal.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]signal.Event(nil), r.events...)
}

// count returns how many events of kind and act there were so far.
func (r *recorder) count(kind signal.EventKind, act signal.Action) int {
	n := 0
	for _, e := range r.all() {
		if e.Kind == kind && e.Action == act {
			n++
		}
	}
	return n
}

func (r *recorder) String() string {
	var b strings.Builder
	for _, e := range r.all() {
		fmt.Fprintf(&b, "\t%v %v signal=%v err=%v\n", e.Kind, e.Action, e.Signal, e.Err)
	}
	return b.String()
}

// running is a Run on a goroutine of the test.
type running struct {
	rec    *recorder
	cancel context.CancelCauseFunc
	errc   chan error
	err    error
	done   bool
}

// start runs Run (with real signals) or, if c is not nil, the dispatcher fed
// from c, and waits until it is ready. Cleanup cancels it and waits for it.
// A nil o.Logger stays nil: Run discards its records.
func start(t *testing.T, a signal.Actions, o signal.Options, c <-chan os.Signal) *running {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	r := &running{rec: newRecorder(), cancel: cancel, errc: make(chan error, 1)}
	o.OnEvent = r.rec.OnEvent
	go func() {
		if c != nil {
			r.errc <- signal.RunFromChannel(ctx, a, o, c)
			return
		}
		r.errc <- signal.Run(ctx, a, o)
	}()
	t.Cleanup(func() {
		cancel(errors.New("test over"))
		r.result(t)
	})
	r.rec.wait(t, signal.EventReady, 0)
	return r
}

// startChan is start fed from c, with chanOptions.
func startChan(t *testing.T, a signal.Actions, c <-chan os.Signal) *running {
	t.Helper()
	return start(t, a, chanOptions(), c)
}

// result waits for Run to return and returns its error.
func (r *running) result(t testing.TB) error {
	t.Helper()
	if r.done {
		return r.err
	}
	select {
	case r.err = <-r.errc:
		r.done = true
		return r.err
	case <-time.After(waitTimeout):
		t.Fatalf("Run did not return within %v; events:\n%s", waitTimeout, r.rec)
		return nil
	}
}

// recv receives from c within waitTimeout.
func recv[T any](t testing.TB, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("no %s within %v", what, waitTimeout)
		var zero T
		return zero
	}
}

// send sends v on c within waitTimeout.
func send[T any](t testing.TB, c chan<- T, v T, what string) {
	t.Helper()
	select {
	case c <- v:
	case <-time.After(waitTimeout):
		t.Fatalf("could not %s within %v", what, waitTimeout)
	}
}

// noKill is a Kill that fails the test.
func noKill(t *testing.T) func(error) {
	return func(cause error) { assert.Fail(t, "Kill called", "cause: %v", cause) }
}

// gate is an upgrade or reload func that reports each call and blocks until
// released or cancelled.
type gate struct {
	started chan context.Context
	release chan error
}

func newGate() *gate {
	return &gate{started: make(chan context.Context, 64), release: make(chan error)}
}

func (g *gate) fn(ctx context.Context) error {
	g.started <- ctx
	select {
	case err := <-g.release:
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// signalCause checks that err is a *SignalError for sig wrapping want.
func signalCause(t testing.TB, err error, sig os.Signal, want error) {
	t.Helper()
	var se *signal.SignalError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, sig, se.Signal, "the signal the cause names")
	assert.ErrorIs(t, err, want)
}
