//go:build unix

package signal_test

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/signal"
)

// These tests send real signals to the test process. They never run in
// parallel: every Run gets every signal.

// index returns the position of the first event of kind and act, or -1.
func (r *recorder) index(kind signal.EventKind, act signal.Action) int {
	for i, e := range r.all() {
		if e.Kind == kind && e.Action == act {
			return i
		}
	}
	return -1
}

// steps lists the started and finished events of act, in order.
func (r *recorder) steps(act signal.Action) []string {
	var s []string
	for _, e := range r.all() {
		if e.Action == act && (e.Kind == signal.EventStarted || e.Kind == signal.EventFinished) {
			s = append(s, e.Kind.String()+" "+e.Action.String())
		}
	}
	return s
}

func TestHangupRunsOneUpgrade(t *testing.T) {
	var calls atomic.Int32
	r := start(t, signal.Actions{
		Upgrade: func(ctx context.Context) error { calls.Add(1); return nil },
		Kill:    noKill(t),
	}, signal.Options{}, nil)

	raise(t, syscall.SIGHUP)
	got := r.rec.wait(t, signal.EventStarted, signal.ActionUpgrade)
	assert.Equal(t, syscall.SIGHUP, got.Signal)
	fin := r.rec.wait(t, signal.EventFinished, signal.ActionUpgrade)
	assert.NoError(t, fin.Err)

	r.cancel(nil)
	assert.ErrorIs(t, r.result(t), context.Canceled)
	assert.Equal(t, int32(1), calls.Load())
	assert.Equal(t, 1, r.rec.count(signal.EventStarted, signal.ActionUpgrade))
}

// TestHangupStorm sends 20 SIGHUPs while the first upgrade is held, and
// checks the documented rule: they give exactly one follow-up.
func TestHangupStorm(t *testing.T) {
	g := newGate()
	r := start(t, signal.Actions{Upgrade: g.fn, Kill: noKill(t)}, signal.Options{}, nil)

	// The first signal starts upgrade 1. Waiting for it makes sure the
	// others arrive while it runs: the kernel and the runtime merge pending
	// signals, so 20 signals sent at once might reach Run as one.
	begin := time.Now()
	raise(t, syscall.SIGHUP)
	first := recv(t, g.started, "upgrade 1")
	for range 19 {
		raise(t, syscall.SIGHUP)
	}
	t.Logf("20 SIGHUPs sent in %v", time.Since(begin))
	// At least one of the 19 reached Run while upgrade 1 runs.
	r.rec.wait(t, signal.EventCoalesced, signal.ActionUpgrade)
	send(t, g.release, nil, "finish upgrade 1")

	second := recv(t, g.started, "the follow-up upgrade")
	require.NoError(t, first.Err(), "upgrade 1's context")
	// Stop now: a SIGHUP of the storm still on its way after this point
	// would only queue a follow-up, which the stop drops.
	stop := errors.New("test stops")
	r.cancel(stop)
	assert.ErrorIs(t, r.result(t), context.Canceled)
	assert.ErrorIs(t, context.Cause(second), stop, "the follow-up's context is cancelled with Run's cause")

	assert.Equal(t, 2, r.rec.count(signal.EventStarted, signal.ActionUpgrade), "events:\n%s", r.rec)
	assert.Len(t, g.started, 0, "a third upgrade started")
	assert.Equal(t, []string{"started upgrade", "finished upgrade", "started upgrade", "finished upgrade"},
		r.rec.steps(signal.ActionUpgrade), "the follow-up started after upgrade 1 finished")
}

func TestStopGetsCause(t *testing.T) {
	type call struct {
		ctxErr error
		cause  error
	}
	calls := make(chan call, 2)
	drained := errors.New("drained with one error")
	r := start(t, signal.Actions{
		Upgrade: func(ctx context.Context) error { return nil },
		Stop: func(ctx context.Context, cause error) error {
			calls <- call{ctx.Err(), cause}
			return drained
		},
		Kill: noKill(t),
	}, signal.Options{}, nil)

	raise(t, syscall.SIGTERM)
	c := recv(t, calls, "Stop call")
	assert.NoError(t, c.ctxErr, "Stop's context is live while it drains")
	signalCause(t, c.cause, syscall.SIGTERM, signal.ErrStop)
	assert.Equal(t, "signal: terminated signal received: graceful stop", c.cause.Error())
	assert.ErrorIs(t, r.result(t), drained, "Run returns Stop's error")
	assert.Len(t, calls, 0)
}

func TestSecondStopSignalKills(t *testing.T) {
	stopCause := make(chan error, 1)
	killed := make(chan error, 2)
	r := start(t, signal.Actions{
		Stop: func(ctx context.Context, cause error) error {
			<-ctx.Done() // a slow drain, cut short by the immediate stop
			stopCause <- context.Cause(ctx)
			return nil
		},
		Kill: func(cause error) { killed <- cause },
	}, signal.Options{}, nil)

	raise(t, syscall.SIGTERM)
	r.rec.wait(t, signal.EventStarted, signal.ActionStop)
	raise(t, syscall.SIGINT)

	cause := recv(t, killed, "Kill call")
	signalCause(t, cause, syscall.SIGINT, signal.ErrKill)
	assert.Equal(t, cause, recv(t, stopCause, "Stop's context cancelled"), "Stop's context is cancelled with the kill cause")
	assert.Equal(t, cause, r.result(t), "Run returns the kill cause when Kill returns")
	assert.Len(t, killed, 0)
}

func TestQuitKillsDuringUpgrade(t *testing.T) {
	g := newGate()
	killed := make(chan error, 2)
	var stops atomic.Int32
	r := start(t, signal.Actions{
		Upgrade: g.fn,
		Stop:    func(context.Context, error) error { stops.Add(1); return nil },
		Kill:    func(cause error) { killed <- cause },
	}, signal.Options{}, nil)

	raise(t, syscall.SIGHUP)
	up := recv(t, g.started, "upgrade")
	raise(t, syscall.SIGQUIT)
	cause := recv(t, killed, "Kill call")
	signalCause(t, cause, syscall.SIGQUIT, signal.ErrKill)
	assert.Equal(t, cause, r.result(t))
	assert.Equal(t, cause, context.Cause(up), "the upgrade's context is cancelled with the kill cause")
	assert.Zero(t, stops.Load(), "Stop called after an immediate stop")
}

// TestStopDuringUpgrade: SIGTERM cancels the running upgrade with cause,
// drops its pending follow-up, and Stop runs once the upgrade has returned.
func TestStopDuringUpgrade(t *testing.T) {
	g := newGate()
	stopped := make(chan error, 1)
	r := start(t, signal.Actions{
		Upgrade: g.fn,
		Stop:    func(ctx context.Context, cause error) error { stopped <- cause; return nil },
		Kill:    noKill(t),
	}, signal.Options{}, nil)

	raise(t, syscall.SIGHUP)
	up := recv(t, g.started, "upgrade")
	raise(t, syscall.SIGHUP)
	r.rec.wait(t, signal.EventCoalesced, signal.ActionUpgrade)
	raise(t, syscall.SIGTERM)

	cause := recv(t, stopped, "Stop call")
	signalCause(t, cause, syscall.SIGTERM, signal.ErrStop)
	assert.Equal(t, cause, context.Cause(up), "the upgrade's context is cancelled with the stop cause")
	assert.NoError(t, r.result(t))

	assert.Equal(t, 1, r.rec.count(signal.EventStarted, signal.ActionUpgrade), "the follow-up ran")
	assert.Equal(t, 1, r.rec.count(signal.EventDropped, signal.ActionUpgrade), "the follow-up was not reported dropped")
	assert.Less(t, r.rec.index(signal.EventFinished, signal.ActionUpgrade), r.rec.index(signal.EventStarted, signal.ActionStop),
		"Stop started before the upgrade returned")
}

func TestReloadRunsBesideUpgrade(t *testing.T) {
	up, re := newGate(), newGate()
	r := start(t, signal.Actions{Upgrade: up.fn, Reload: re.fn, Kill: noKill(t)}, signal.Options{}, nil)

	raise(t, syscall.SIGHUP)
	recv(t, up.started, "upgrade")
	raise(t, syscall.SIGUSR2)
	recv(t, re.started, "reload while the upgrade runs")
	send(t, re.release, nil, "finish the reload")
	send(t, up.release, nil, "finish the upgrade")
	r.rec.wait(t, signal.EventFinished, signal.ActionUpgrade)
	r.cancel(nil)
	assert.ErrorIs(t, r.result(t), context.Canceled)
	assert.Equal(t, 1, r.rec.count(signal.EventStarted, signal.ActionReload))
}

func TestCustomSignals(t *testing.T) {
	g := newGate()
	r := start(t, signal.Actions{Upgrade: g.fn, Kill: noKill(t)}, signal.Options{
		UpgradeSignals: []os.Signal{syscall.SIGUSR1},
	}, nil)
	raise(t, syscall.SIGUSR1)
	ctx := recv(t, g.started, "upgrade on SIGUSR1")
	assert.Equal(t, syscall.SIGUSR1, r.rec.wait(t, signal.EventStarted, signal.ActionUpgrade).Signal)
	r.cancel(nil)
	assert.ErrorIs(t, r.result(t), context.Canceled)
	assert.ErrorIs(t, context.Cause(ctx), context.Canceled)
}

// TestContextDone: Run returns ctx.Err() without calling Stop; the running
// upgrade's context carries ctx's cause. goleak (TestMain) checks that no
// goroutine is left; TestProcessUnsubscribes checks the unsubscription.
func TestContextDone(t *testing.T) {
	g := newGate()
	var stops atomic.Int32
	r := start(t, signal.Actions{
		Upgrade: g.fn,
		Stop:    func(context.Context, error) error { stops.Add(1); return nil },
		Kill:    noKill(t),
	}, signal.Options{}, nil)
	raise(t, syscall.SIGHUP)
	up := recv(t, g.started, "upgrade")

	why := errors.New("shutting down for the test")
	r.cancel(why)
	assert.ErrorIs(t, r.result(t), context.Canceled)
	assert.ErrorIs(t, context.Cause(up), why)
	assert.Zero(t, stops.Load())
}

// TestStart: Start dispatches on a goroutine of its own as Run does; its
// wait returns Run's result to every caller, and an invalid list is an
// error at once, with nothing started (goleak, TestMain).
func TestStart(t *testing.T) {
	g := newGate()
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait, err := signal.Start(ctx, signal.Actions{Upgrade: g.fn, Kill: noKill(t)}, signal.Options{OnEvent: rec.OnEvent})
	require.NoError(t, err)
	// Subscribed already: no need to wait for EventReady before raising.
	raise(t, syscall.SIGHUP)
	recv(t, g.started, "upgrade")
	assert.Equal(t, 0, rec.index(signal.EventReady, 0), "ready is the first event")

	cancel()
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- wait() }()
	}
	assert.ErrorIs(t, recv(t, errs, "first wait"), context.Canceled)
	assert.ErrorIs(t, recv(t, errs, "second wait"), context.Canceled)

	wait, err = signal.Start(context.Background(), signal.Actions{Upgrade: g.fn, Stop: func(context.Context, error) error { return nil }}, signal.Options{
		UpgradeSignals: []os.Signal{syscall.SIGUSR1},
		StopSignals:    []os.Signal{syscall.SIGUSR1},
	})
	assert.ErrorContains(t, err, "user defined signal 1 is in both the upgrade and the stop signals")
	assert.Nil(t, wait)
}
