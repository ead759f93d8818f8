package listener_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/listener"
)

// TestUndrain is the rollback after a hand-over: a drain is in progress
// with an idle and an active connection when Undrain calls it off. The
// Drain calls return ErrUndrained, the listener accepts again and answers
// new connections normally, the marked connections still wind down with
// "Connection: close", and a later Drain completes normally.
func TestUndrain(t *testing.T) {
	// A grace far longer than the test: no connection is closed idle, so
	// every close below is one that "Connection: close" asked for.
	l := wrap(t, listen(t), listener.Options{IdleGrace: time.Hour})
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/", ok)
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "released")
	})
	serve(t, l, mux)

	idle := dial(t, l.Addr())
	resp, _ := idle.mustGet(t, "/")
	require.False(t, resp.Close, "Connection: close before any drain")
	active := dial(t, l.Addr())
	require.NoError(t, active.send("/block"))
	recvWithin(t, entered, "handler")
	l.untilCounts(t, listener.Counts{Active: 1, Idle: 1, Accepted: 2})

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	r1, r2 := drainAsync(l, ctx), drainAsync(l, ctx)
	l.until(t, "two Drain calls waiting", func() bool { return listener.DrainCalls(l.Listener) == 2 })
	require.True(t, l.Paused())

	require.True(t, l.Undrain(), "Undrain with a drain in progress")
	assert.False(t, l.Undrain(), "second Undrain")
	for i, r := range []drainResult{recvWithin(t, r1, "Drain 1"), recvWithin(t, r2, "Drain 2")} {
		assert.ErrorIs(t, r.err, listener.ErrUndrained, "Drain %d", i+1)
		assert.Equal(t, listener.DrainStats{Conns: 2, Duration: r.stats.Duration}, r.stats, "Drain %d", i+1)
	}
	assert.False(t, l.Paused(), "paused after Undrain")
	select {
	case <-l.Draining():
		t.Error("Draining is closed after Undrain")
	default:
	}

	// New connections are accepted and answered as usual: not marked.
	fresh := dial(t, l.Addr())
	for range 2 {
		resp, body := fresh.mustGet(t, "/")
		assert.Equal(t, "ok", body)
		assert.False(t, resp.Close, "Connection: close on a connection accepted after Undrain")
	}

	// The marked idle connection winds down: its next response says
	// "Connection: close" and the server closes it.
	resp, body := idle.mustGet(t, "/")
	assert.Equal(t, "ok", body)
	assert.True(t, resp.Close, "no Connection: close on a connection marked by the called-off drain")
	idle.waitClosed(t)

	// The active one's response was under way before the drain started;
	// its next one says "Connection: close".
	close(release)
	resp, body, err := active.recv()
	require.NoError(t, err)
	assert.Equal(t, "released", body)
	assert.False(t, resp.Close, "the handler started before the drain: its response cannot say Connection: close")
	resp, _ = active.mustGet(t, "/")
	assert.True(t, resp.Close, "no Connection: close on the marked active connection's next response")
	active.waitClosed(t)
	l.untilCounts(t, listener.Counts{Idle: 1, Accepted: 3})

	// A later drain covers the connection accepted after Undrain and
	// completes normally.
	res := drainAsync(l, ctx)
	recvWithin(t, l.Draining(), "second drain to start")
	resp, _ = fresh.mustGet(t, "/")
	assert.True(t, resp.Close, "no Connection: close in the second drain")
	fresh.waitClosed(t)
	r := recvWithin(t, res, "second Drain")
	require.NoError(t, r.err)
	assert.Equal(t, listener.DrainStats{Conns: 1, ClosedByPeerOrServer: 1, Duration: r.stats.Duration}, r.stats)
}

// TestUndrainMarkedIdleStillClosed: after Undrain, a connection the drain
// marked is still closed by the idle closer after the grace, while a
// connection accepted after Undrain stays open; a new drain closes it.
func TestUndrainMarkedIdleStillClosed(t *testing.T) {
	const grace = 200 * time.Millisecond
	l := wrap(t, listen(t), listener.Options{IdleGrace: grace})
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/", ok)
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	})
	serve(t, l, mux)

	marked := dial(t, l.Addr())
	marked.mustGet(t, "/")
	// An active request keeps the drain from completing before Undrain.
	busy := dial(t, l.Addr())
	require.NoError(t, busy.send("/block"))
	recvWithin(t, entered, "handler")
	l.untilCounts(t, listener.Counts{Active: 1, Idle: 1, Accepted: 2})

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res := drainAsync(l, ctx)
	l.until(t, "Drain waiting", func() bool { return listener.DrainCalls(l.Listener) == 1 })
	require.True(t, l.Undrain())
	r := recvWithin(t, res, "Drain")
	require.ErrorIs(t, r.err, listener.ErrUndrained)
	if r.stats.ClosedIdle != 0 {
		t.Skipf("the idle closer ran before Undrain (%v after the drain started): machine too slow for this test", r.stats.Duration)
	}

	fresh := dial(t, l.Addr())
	resp, _ := fresh.mustGet(t, "/")
	require.False(t, resp.Close)

	// The marked connection is closed idle, with nothing waiting for it.
	marked.waitClosed(t)
	l.untilCounts(t, listener.Counts{Active: 1, Idle: 1, Accepted: 3})

	// The fresh one is not marked: it outlives the grace (a bounded look,
	// twice the grace after it went idle).
	require.NoError(t, fresh.SetReadDeadline(time.Now().Add(2*grace)))
	_, err := fresh.br.ReadByte()
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "connection accepted after Undrain closed by the idle closer")
	assert.Equal(t, listener.Counts{Active: 1, Idle: 1, Accepted: 3}, l.Counts())

	// A new drain marks it too: closed idle after the grace; the busy one
	// ends after its response.
	res = drainAsync(l, ctx)
	recvWithin(t, l.Draining(), "second drain to start")
	close(release)
	fresh.waitClosed(t)
	r = recvWithin(t, res, "second Drain")
	require.NoError(t, r.err)
	assert.Equal(t, 2, r.stats.Conns)
	assert.Equal(t, 2, r.stats.ClosedIdle, "stats %+v", r.stats)
}

// TestUndrainWithoutDrain: Undrain is a no-op (false) without a drain,
// undoes a drain that already completed (the listener accepts again), and
// leaves a closed listener closed.
func TestUndrainWithoutDrain(t *testing.T) {
	l := wrap(t, listen(t), listener.Options{IdleGrace: time.Millisecond})
	serve(t, l, http.HandlerFunc(ok))
	assert.False(t, l.Undrain(), "Undrain without a drain")

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	s, err := l.Drain(ctx) // no connection: complete at once
	require.NoError(t, err)
	require.Zero(t, s.Conns)
	first := l.Draining()
	l.Resume() // no-op: the drain is in progress until Undrain
	require.True(t, l.Paused())

	assert.True(t, l.Undrain(), "Undrain after a complete drain")
	assert.False(t, l.Paused())
	assert.NotEqual(t, first, l.Draining(), "Draining channel not replaced")
	c := dial(t, l.Addr())
	resp, body := c.mustGet(t, "/")
	assert.Equal(t, "ok", body)
	assert.False(t, resp.Close)

	// A drain again: it covers the new connection.
	s, err = l.Drain(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, s.ClosedIdle)
	c.waitClosed(t)

	// A closed listener stays closed.
	l2 := wrap(t, listen(t), listener.Options{})
	require.NoError(t, l2.Close())
	_, err = l2.Drain(ctx)
	require.NoError(t, err)
	assert.True(t, l2.Undrain())
	_, err = l2.Accept()
	assert.ErrorIs(t, err, net.ErrClosed)
}

// enteringListener is a TCP listener that says when Accept is called and
// has no SetDeadline: Pause cannot interrupt its pending Accept.
type enteringListener struct {
	net.Listener
	entered chan struct{}
}

func (e enteringListener) Accept() (net.Conn, error) {
	select {
	case e.entered <- struct{}{}:
	default:
	}
	return e.Listener.Accept()
}

// TestDrainMarksConnsAcceptedDuringDrain: a connection accepted while a
// drain is in progress is marked (here by an inner Accept that was pending
// when the drain started); after Undrain the next one is not.
func TestDrainMarksConnsAcceptedDuringDrain(t *testing.T) {
	inner := enteringListener{Listener: listen(t), entered: make(chan struct{}, 1)}
	l := wrap(t, inner, listener.Options{IdleGrace: time.Hour})
	serve(t, l, http.HandlerFunc(ok))
	recvWithin(t, inner.entered, "Serve to call Accept")

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, err := l.Drain(ctx) // nothing to wait for; the pending Accept is not counted
	require.NoError(t, err)

	c := dial(t, l.Addr()) // taken by the Accept that was pending
	resp, _ := c.mustGet(t, "/")
	assert.True(t, resp.Close, "no Connection: close on a connection accepted during the drain")
	c.waitClosed(t)

	require.True(t, l.Undrain())
	c2 := dial(t, l.Addr())
	for range 2 {
		resp, _ = c2.mustGet(t, "/")
		assert.False(t, resp.Close, "Connection: close on a connection accepted after Undrain")
	}
}
