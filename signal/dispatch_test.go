//go:build unix

package signal_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/handoff-go/handoff/signal"
)

// These tests feed the dispatcher from an unbuffered channel: a send returns
// only once Run has taken the signal, and Run handles a signal completely
// before it looks at anything else, so the order is exact.

func TestStormFromChannelGivesExactlyTwoUpgrades(t *testing.T) {
	g := newGate()
	c := make(chan os.Signal)
	r := start(t, signal.Actions{Upgrade: g.fn, Kill: noKill(t)}, signal.Options{}, c)

	send(t, c, os.Signal(syscall.SIGHUP), "send SIGHUP 1")
	recv(t, g.started, "upgrade 1")
	for range 19 {
		send(t, c, os.Signal(syscall.SIGHUP), "send a storm SIGHUP")
	}
	send(t, g.release, nil, "finish upgrade 1")
	recv(t, g.started, "the follow-up")
	send(t, g.release, nil, "finish the follow-up")
	r.rec.wait(t, signal.EventFinished, signal.ActionUpgrade)
	r.rec.wait(t, signal.EventFinished, signal.ActionUpgrade)

	expect.Equal(t, 2, r.rec.count(signal.EventStarted, signal.ActionUpgrade))
	expect.Equal(t, 19, r.rec.count(signal.EventCoalesced, signal.ActionUpgrade))
	expect.Len(t, g.started, 0)

	// The lane is idle again: the next signal starts an upgrade at once.
	send(t, c, os.Signal(syscall.SIGHUP), "send a later SIGHUP")
	recv(t, g.started, "upgrade 3")
	send(t, g.release, nil, "finish upgrade 3")
	r.rec.wait(t, signal.EventFinished, signal.ActionUpgrade)
	r.cancel(nil)
	expect.ErrorIs(t, r.result(t), context.Canceled)
	expect.Equal(t, 3, r.rec.count(signal.EventStarted, signal.ActionUpgrade))
}

func TestFollowUpRunsAfterFailure(t *testing.T) {
	g := newGate()
	c := make(chan os.Signal)
	r := start(t, signal.Actions{Upgrade: g.fn, Kill: noKill(t)}, signal.Options{}, c)

	send(t, c, os.Signal(syscall.SIGHUP), "send SIGHUP 1")
	recv(t, g.started, "upgrade 1")
	send(t, c, os.Signal(syscall.SIGHUP), "send SIGHUP 2")
	failed := errors.New("new binary did not become ready")
	send(t, g.release, failed, "fail upgrade 1")
	fin := r.rec.wait(t, signal.EventFinished, signal.ActionUpgrade)
	expect.Equal(t, failed, fin.Err)
	recv(t, g.started, "the follow-up after a failure")
	send(t, g.release, nil, "finish the follow-up")
	fin = r.rec.wait(t, signal.EventFinished, signal.ActionUpgrade)
	expect.NoError(t, fin.Err)
	expect.Equal(t, 2, r.rec.count(signal.EventStarted, signal.ActionUpgrade))
}

func TestSignalsDuringStopAreDropped(t *testing.T) {
	stopping := make(chan struct{})
	finish := make(chan struct{})
	var upgrades atomic.Int32
	c := make(chan os.Signal)
	r := start(t, signal.Actions{
		Upgrade: func(context.Context) error { upgrades.Add(1); return nil },
		Reload:  func(context.Context) error { upgrades.Add(1); return nil },
		Stop: func(ctx context.Context, cause error) error {
			close(stopping)
			<-finish
			return nil
		},
		Kill: noKill(t),
	}, signal.Options{}, c)

	send(t, c, os.Signal(syscall.SIGTERM), "send SIGTERM")
	recv(t, stopping, "Stop call")
	send(t, c, os.Signal(syscall.SIGHUP), "send SIGHUP")
	send(t, c, os.Signal(syscall.SIGUSR2), "send SIGUSR2")
	close(finish)
	expect.NoError(t, r.result(t))
	expect.Zero(t, upgrades.Load())
	expect.Equal(t, 1, r.rec.count(signal.EventDropped, signal.ActionUpgrade))
	expect.Equal(t, 1, r.rec.count(signal.EventDropped, signal.ActionReload))
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
	r := start(t, signal.Actions{
		Upgrade: upgrade,
		Stop:    func(context.Context, error) error { stops.Add(1); return nil },
		Kill:    func(cause error) { mu.Lock(); kills = append(kills, cause); mu.Unlock() },
	}, signal.Options{}, c)

	send(t, c, os.Signal(syscall.SIGHUP), "send SIGHUP")
	up := recv(t, started, "upgrade")
	// The stop waits for the upgrade; a second SIGTERM meanwhile kills.
	send(t, c, os.Signal(syscall.SIGTERM), "send SIGTERM")
	send(t, c, os.Signal(syscall.SIGTERM), "send SIGTERM again")
	send(t, c, os.Signal(syscall.SIGQUIT), "send SIGQUIT")
	close(release)
	err := r.result(t)
	signalCause(t, err, syscall.SIGTERM, signal.ErrKill)
	signalCause(t, context.Cause(up), syscall.SIGTERM, signal.ErrStop)
	expect.Zero(t, stops.Load(), "Stop started after Kill")
	mu.Lock()
	defer mu.Unlock()
	expect.Equal(t, []error{err}, kills, "Kill is called once")
	expect.Equal(t, 1, r.rec.count(signal.EventDropped, signal.ActionKill))
}

func TestContextDoneDuringStop(t *testing.T) {
	stopCtx := make(chan context.Context, 1)
	drainErr := errors.New("drain cut short")
	c := make(chan os.Signal)
	r := start(t, signal.Actions{
		Stop: func(ctx context.Context, cause error) error {
			stopCtx <- ctx
			<-ctx.Done()
			return drainErr
		},
		Kill: noKill(t),
	}, signal.Options{}, c)

	send(t, c, os.Signal(syscall.SIGINT), "send SIGINT")
	ctx := recv(t, stopCtx, "Stop call")
	why := errors.New("deadline of the whole process")
	r.cancel(why)
	expect.ErrorIs(t, r.result(t), drainErr, "Run returns Stop's error")
	expect.ErrorIs(t, context.Cause(ctx), why)
}

func TestLogRecords(t *testing.T) {
	var buf bytes.Buffer
	g := newGate()
	c := make(chan os.Signal)
	r := start(t, signal.Actions{Upgrade: g.fn, Kill: noKill(t)}, signal.Options{
		Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, c)
	send(t, c, os.Signal(syscall.SIGHUP), "send SIGHUP")
	recv(t, g.started, "upgrade")
	send(t, c, os.Signal(syscall.SIGHUP), "send SIGHUP")
	send(t, g.release, errors.New("boom"), "fail the upgrade")
	recv(t, g.started, "the follow-up")
	r.cancel(nil)
	must.ErrorIs(t, r.result(t), context.Canceled)

	out := buf.String() // Run has returned: no more writes.
	for _, want := range []string{
		`level=DEBUG msg="signal: handling signals" event=ready upgrade=[hangup] kill=[quit]`,
		`level=INFO msg="signal: received" event=received action=upgrade signal=hangup`,
		`level=INFO msg="signal: upgrade started" event=started action=upgrade signal=hangup`,
		`level=INFO msg="signal: upgrade in progress; coalesced into one follow-up" event=coalesced action=upgrade signal=hangup`,
		`level=ERROR msg="signal: upgrade finished" event=finished duration=`,
		`error=boom action=upgrade`,
	} {
		expect.True(t, strings.Contains(out, want), "log lacks %q:\n%s", want, out)
	}
}
