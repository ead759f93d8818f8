package signal_test

import (
	"bytes"
	"context"
	"errors"
	"log"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/signal"
)

// These tests feed the dispatcher from an unbuffered channel: a send returns
// only once Run has taken the signal, and Run handles a signal completely
// before it looks at anything else, so the order is exact.

func TestStormFromChannelGivesExactlyTwoUpgrades(t *testing.T) {
	g := newGate()
	c := make(chan os.Signal)
	r := startChan(t, signal.Actions{Upgrade: g.fn, Kill: noKill(t)}, c)

	send(t, c, sigHUP, "send SIGHUP 1")
	recv(t, g.started, "upgrade 1")
	for range 19 {
		send(t, c, sigHUP, "send a storm SIGHUP")
	}
	send(t, g.release, nil, "finish upgrade 1")
	recv(t, g.started, "the follow-up")
	send(t, g.release, nil, "finish the follow-up")
	r.rec.wait(t, signal.EventFinished, signal.ActionUpgrade)
	r.rec.wait(t, signal.EventFinished, signal.ActionUpgrade)

	assert.Equal(t, 2, r.rec.count(signal.EventStarted, signal.ActionUpgrade))
	assert.Equal(t, 19, r.rec.count(signal.EventCoalesced, signal.ActionUpgrade))
	assert.Len(t, g.started, 0)

	// The lane is idle again: the next signal starts an upgrade at once.
	send(t, c, sigHUP, "send a later SIGHUP")
	recv(t, g.started, "upgrade 3")
	send(t, g.release, nil, "finish upgrade 3")
	r.rec.wait(t, signal.EventFinished, signal.ActionUpgrade)
	r.cancel(nil)
	assert.ErrorIs(t, r.result(t), context.Canceled)
	assert.Equal(t, 3, r.rec.count(signal.EventStarted, signal.ActionUpgrade))
}

func TestFollowUpRunsAfterFailure(t *testing.T) {
	g := newGate()
	c := make(chan os.Signal)
	r := startChan(t, signal.Actions{Upgrade: g.fn, Kill: noKill(t)}, c)

	send(t, c, sigHUP, "send SIGHUP 1")
	recv(t, g.started, "upgrade 1")
	send(t, c, sigHUP, "send SIGHUP 2")
	failed := errors.New("new binary did not become ready")
	send(t, g.release, failed, "fail upgrade 1")
	fin := r.rec.wait(t, signal.EventFinished, signal.ActionUpgrade)
	assert.Equal(t, failed, fin.Err)
	recv(t, g.started, "the follow-up after a failure")
	send(t, g.release, nil, "finish the follow-up")
	fin = r.rec.wait(t, signal.EventFinished, signal.ActionUpgrade)
	assert.NoError(t, fin.Err)
	assert.Equal(t, 2, r.rec.count(signal.EventStarted, signal.ActionUpgrade))
}

func TestSignalsDuringStopAreDropped(t *testing.T) {
	stopping := make(chan struct{})
	finish := make(chan struct{})
	var upgrades atomic.Int32
	c := make(chan os.Signal)
	r := startChan(t, signal.Actions{
		Upgrade: func(context.Context) error { upgrades.Add(1); return nil },
		Reload:  func(context.Context) error { upgrades.Add(1); return nil },
		Stop: func(ctx context.Context, cause error) error {
			close(stopping)
			<-finish
			return nil
		},
		Kill: noKill(t),
	}, c)

	send(t, c, sigTERM, "send SIGTERM")
	recv(t, stopping, "Stop call")
	send(t, c, sigHUP, "send SIGHUP")
	send(t, c, sigUSR2, "send SIGUSR2")
	close(finish)
	assert.NoError(t, r.result(t))
	assert.Zero(t, upgrades.Load())
	assert.Equal(t, 1, r.rec.count(signal.EventDropped, signal.ActionUpgrade))
	assert.Equal(t, 1, r.rec.count(signal.EventDropped, signal.ActionReload))
}

func TestKillBeforeStopStarts(t *testing.T) {
	// An upgrade that ignores its context, so the stop has to wait.
	started := make(chan context.Context, 1)
	release := make(chan struct{})
	upgrade := func(ctx context.Context) error {
		started <- ctx
		<-release
		return nil
	}
	var stops atomic.Int32
	var kills []error
	var mu sync.Mutex
	c := make(chan os.Signal)
	r := startChan(t, signal.Actions{
		Upgrade: upgrade,
		Stop:    func(context.Context, error) error { stops.Add(1); return nil },
		Kill:    func(cause error) { mu.Lock(); kills = append(kills, cause); mu.Unlock() },
	}, c)

	send(t, c, sigHUP, "send SIGHUP")
	up := recv(t, started, "upgrade")
	// The stop waits for the upgrade; a second SIGTERM meanwhile kills.
	send(t, c, sigTERM, "send SIGTERM")
	send(t, c, sigTERM, "send SIGTERM again")
	send(t, c, sigQUIT, "send SIGQUIT")
	close(release)
	err := r.result(t)
	signalCause(t, err, sigTERM, signal.ErrKill)
	signalCause(t, context.Cause(up), sigTERM, signal.ErrStop)
	assert.Zero(t, stops.Load(), "Stop started after Kill")
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []error{err}, kills, "Kill is called once")
	assert.Equal(t, 1, r.rec.count(signal.EventDropped, signal.ActionKill))
}

func TestContextDoneDuringStop(t *testing.T) {
	stopCtx := make(chan context.Context, 1)
	drainErr := errors.New("drain cut short")
	c := make(chan os.Signal)
	r := startChan(t, signal.Actions{
		Stop: func(ctx context.Context, cause error) error {
			stopCtx <- ctx
			<-ctx.Done()
			return drainErr
		},
		Kill: noKill(t),
	}, c)

	send(t, c, sigINT, "send SIGINT")
	ctx := recv(t, stopCtx, "Stop call")
	why := errors.New("deadline of the whole process")
	r.cancel(why)
	assert.ErrorIs(t, r.result(t), drainErr, "Run returns Stop's error")
	assert.ErrorIs(t, context.Cause(ctx), why)
}

func TestLogRecords(t *testing.T) {
	var buf bytes.Buffer
	g := newGate()
	c := make(chan os.Signal)
	o := chanOptions()
	o.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := start(t, signal.Actions{Upgrade: g.fn, Kill: noKill(t)}, o, c)
	send(t, c, sigHUP, "send SIGHUP")
	recv(t, g.started, "upgrade")
	send(t, c, sigHUP, "send SIGHUP")
	send(t, g.release, errors.New("boom"), "fail the upgrade")
	recv(t, g.started, "the follow-up")
	r.cancel(nil)
	require.ErrorIs(t, r.result(t), context.Canceled)

	out := buf.String() // Run has returned: no more writes.
	for _, want := range []string{
		`level=DEBUG msg="signal: handling signals" event=ready upgrade=[hangup] kill=[quit]`,
		`level=INFO msg="signal: received" event=received action=upgrade signal=hangup`,
		`level=INFO msg="signal: upgrade started" event=started action=upgrade signal=hangup`,
		`level=INFO msg="signal: upgrade in progress; coalesced into one follow-up" event=coalesced action=upgrade signal=hangup`,
		`level=ERROR msg="signal: upgrade finished" event=finished duration=`,
		`error=boom action=upgrade`,
	} {
		assert.Contains(t, out, want)
	}
}

// TestStopRecords: a stop's cause is logged under error, at level Warn;
// Stop's error at level Error.
func TestStopRecords(t *testing.T) {
	var buf bytes.Buffer
	c := make(chan os.Signal)
	o := chanOptions()
	o.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	r := start(t, signal.Actions{
		Stop: func(context.Context, error) error { return errors.New("drain cut short") },
		Kill: noKill(t),
	}, o, c)
	send(t, c, sigTERM, "send SIGTERM")
	require.EqualError(t, r.result(t), "drain cut short")

	out := buf.String()
	assert.Contains(t, out, `level=INFO msg="signal: stop started" event=started error="signal: terminated signal received: graceful stop" action=stop signal=terminated`)
	assert.Contains(t, out, `level=ERROR msg="signal: stop finished" event=finished duration=`)
	assert.Contains(t, out, `error="drain cut short" action=stop`)
	assert.NotContains(t, out, "cause=")
}

// TestNilLoggerDiscards: with no Logger, Run writes no record anywhere, not
// to slog.Default() either.
func TestNilLoggerDiscards(t *testing.T) {
	var buf bytes.Buffer
	// SetDefault also redirects package log; all three are put back.
	prev, prevOut, prevFlags := slog.Default(), log.Writer(), log.Flags()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() {
		slog.SetDefault(prev)
		log.SetOutput(prevOut)
		log.SetFlags(prevFlags)
	})

	g := newGate()
	c := make(chan os.Signal)
	r := startChan(t, signal.Actions{Upgrade: g.fn, Kill: noKill(t)}, c)
	send(t, c, sigHUP, "send SIGHUP")
	recv(t, g.started, "upgrade")
	send(t, g.release, errors.New("boom"), "fail the upgrade")
	r.rec.wait(t, signal.EventFinished, signal.ActionUpgrade)
	r.cancel(nil)
	require.ErrorIs(t, r.result(t), context.Canceled)
	assert.Empty(t, buf.String(), "records went to slog.Default()")
}

// TestEventTimes: every event says when it happened, in order; only a
// finished action has a Duration, which ends at its Time.
func TestEventTimes(t *testing.T) {
	g := newGate()
	c := make(chan os.Signal)
	before := time.Now()
	r := startChan(t, signal.Actions{Upgrade: g.fn, Kill: noKill(t)}, c)
	send(t, c, sigHUP, "send SIGHUP")
	recv(t, g.started, "upgrade")
	send(t, g.release, nil, "finish the upgrade")
	r.rec.wait(t, signal.EventFinished, signal.ActionUpgrade)
	r.cancel(nil)
	require.ErrorIs(t, r.result(t), context.Canceled)
	after := time.Now()

	events := r.rec.all()
	require.Len(t, events, 4, "ready, received, started, finished:\n%s", r.rec)
	last := before
	for _, e := range events {
		assert.False(t, e.Time.Before(last), "%v at %v, before the previous event (%v)", e.Kind, e.Time, last)
		assert.False(t, e.Time.After(after), "%v at %v, after Run returned (%v)", e.Kind, e.Time, after)
		last = e.Time
		if e.Kind != signal.EventFinished {
			assert.Zero(t, e.Duration, "%v has a Duration", e.Kind)
		}
	}
	started, finished := events[2], events[3]
	require.Equal(t, signal.EventFinished, finished.Kind)
	assert.Positive(t, finished.Duration)
	assert.False(t, finished.Time.Add(-finished.Duration).Before(started.Time),
		"the upgrade ran %v up to %v, so it started before its started event at %v", finished.Duration, finished.Time, started.Time)
}

// TestDefaultSignals: a zero Options subscribes each action to its
// platform's defaults (outside unix, only os.Interrupt, for stop), as the
// ready record lists them.
func TestDefaultSignals(t *testing.T) {
	var buf bytes.Buffer
	nop := func(context.Context) error { return nil }
	c := make(chan os.Signal)
	r := start(t, signal.Actions{
		Upgrade: nop,
		Reload:  nop,
		Stop:    func(context.Context, error) error { return nil },
		Kill:    noKill(t),
	}, signal.Options{Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}, c)
	r.cancel(nil)
	require.ErrorIs(t, r.result(t), context.Canceled)
	assert.Contains(t, buf.String(), `msg="signal: handling signals" event=ready `+defaultTable+"\n")
}

func TestOptionsErrors(t *testing.T) {
	ctx := context.Background()
	a := signal.Actions{
		Upgrade: func(context.Context) error { return nil },
		Stop:    func(context.Context, error) error { return nil },
	}
	o := chanOptions()
	o.UpgradeSignals = []os.Signal{sigTERM}
	err := signal.Run(ctx, a, o)
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "signal: "), err.Error())
	assert.ErrorContains(t, err, "terminated")

	o = chanOptions()
	o.KillSignals = []os.Signal{nil}
	assert.Error(t, signal.Run(ctx, a, o))

	// The overlap only counts for subscribed lists: Reload is nil here.
	c, cancel := context.WithCancel(ctx)
	cancel()
	o = chanOptions()
	o.ReloadSignals = []os.Signal{sigHUP}
	assert.ErrorIs(t, signal.Run(c, a, o), context.Canceled)
}
