//go:build unix

package listener_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/listener"
)

// adoptInto is a SendFunc that hands the sockets to l, as the new
// generation does with what it receives: a conn made from each descriptor
// (a dup: the listener closes the ones it passes) goes to l.Adopt.
func adoptInto(l *tracked) listener.SendFunc {
	return func(fds []int) error {
		for _, fd := range fds {
			nfd, err := syscall.Dup(fd)
			if err != nil {
				return err
			}
			f := os.NewFile(uintptr(nfd), "moved")
			c, err := net.FileConn(f)
			f.Close()
			if err != nil {
				return err
			}
			if err := l.Adopt(c); err != nil {
				c.Close()
				return err
			}
		}
		return nil
	}
}

// answer serves its name.
func answer(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })
}

// generations returns two listeners on one socket, as an upgrade has
// them: the old one serving "old" and accepting, the new one serving
// "new", paused (so that every connection dialled goes to the old one),
// which still takes the connections adopted.
func generations(t *testing.T, opts listener.Options, oldHandler http.Handler) (old, nu *tracked) {
	t.Helper()
	base := listen(t)
	old = wrap(t, dupListener(t, base), opts)
	if oldHandler == nil {
		oldHandler = answer("old")
	}
	serve(t, old, oldHandler)
	nu = wrap(t, dupListener(t, base), listener.Options{})
	nu.Pause()
	serve(t, nu, answer("new"))
	require.NoError(t, base.Close())
	return old, nu
}

func drainWithin(t *testing.T, l *tracked) listener.DrainStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	s, err := l.Drain(ctx)
	require.NoError(t, err)
	return s
}

// Idle keep-alive connections move: the drain ends with every one handed
// over, none closed, and their next requests, sent without a look, are
// answered by the new listener's server, which keeps them open.
func TestHandOverIdle(t *testing.T) {
	const n = 20
	old, nu := generations(t, listener.Options{IdleGrace: time.Hour}, nil)
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, old.Addr())
		_, body := clients[i].mustGet(t, "/")
		require.Equal(t, "old", body)
	}
	old.untilCounts(t, listener.Counts{Idle: n, Accepted: n})
	old.HandOver(adoptInto(nu))
	s := drainWithin(t, old)
	assert.Equal(t, listener.DrainStats{Conns: n, HandedOver: n, Duration: s.Duration}, s)
	assert.Zero(t, s.Kept())
	for i, c := range clients {
		resp, body := c.mustGet(t, "/")
		assert.Equal(t, "new", body, "client %d", i)
		assert.False(t, resp.Close, "client %d: Connection: close", i)
	}
	nu.untilCounts(t, listener.Counts{Idle: n, Accepted: n, Adopted: n})
	assert.Equal(t, uint64(n), old.Counts().HandedOver)
}

// A connection accepted with no request yet (StateNew) moves too.
func TestHandOverNew(t *testing.T) {
	old, nu := generations(t, listener.Options{IdleGrace: time.Hour}, nil)
	c := dial(t, old.Addr())
	old.untilCounts(t, listener.Counts{New: 1, Accepted: 1})
	old.HandOver(adoptInto(nu))
	s := drainWithin(t, old)
	assert.Equal(t, 1, s.HandedOver)
	_, body := c.mustGet(t, "/")
	assert.Equal(t, "new", body)
}

// A request in flight when the drain starts is answered here without
// "Connection: close"; the connection then moves, and its next request is
// answered by the new server.
func TestHandOverAfterResponse(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	old, nu := generations(t, listener.Options{IdleGrace: time.Hour}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "old")
	}))
	c := dial(t, old.Addr())
	require.NoError(t, c.send("/wait"))
	recvWithin(t, entered, "the request to reach the handler")
	old.HandOver(adoptInto(nu))
	res := drainAsync(old, context.Background())
	<-old.Draining()
	close(release)
	resp, body, err := c.recv()
	require.NoError(t, err)
	assert.Equal(t, "old", body)
	assert.False(t, resp.Close, "Connection: close on a connection to hand over")
	r := recvWithin(t, res, "Drain")
	require.NoError(t, r.err)
	assert.Equal(t, 1, r.stats.HandedOver, "stats %+v", r.stats)
	_, body = c.mustGet(t, "/")
	assert.Equal(t, "new", body)
}

// A request whose bytes are in the socket when the connection would move
// is answered here, once; the connection moves after it.
func TestHandOverRequestArriving(t *testing.T) {
	old, nu := generations(t, listener.Options{IdleGrace: time.Hour}, nil)
	c := dial(t, old.Addr())
	c.mustGet(t, "/")
	old.untilCounts(t, listener.Counts{Idle: 1, Accepted: 1})
	var once sync.Once
	listener.SetBeforePeekHook(old.Listener, func() {
		once.Do(func() {
			assert.NoError(t, c.send("/"))
			time.Sleep(10 * time.Millisecond) // loopback: the bytes are in the socket by now
		})
	})
	old.HandOver(adoptInto(nu))
	res := drainAsync(old, context.Background())
	resp, body, err := c.recv()
	require.NoError(t, err)
	assert.Equal(t, "old", body, "the request that was arriving")
	assert.False(t, resp.Close)
	r := recvWithin(t, res, "Drain")
	require.NoError(t, r.err)
	assert.Equal(t, 1, r.stats.HandedOver, "stats %+v", r.stats)
	_, body = c.mustGet(t, "/")
	assert.Equal(t, "new", body)
}

// A client that always has its next request on the way (pipelining) is
// not handed over forever: after a few misses the connection drains here,
// its last response saying "Connection: close".
func TestHandOverGivesUpOnPipelining(t *testing.T) {
	old, nu := generations(t, listener.Options{IdleGrace: time.Hour}, nil)
	c := dial(t, old.Addr())
	c.mustGet(t, "/")
	old.untilCounts(t, listener.Counts{Idle: 1, Accepted: 1})
	var sent atomic.Int32
	listener.SetBeforePeekHook(old.Listener, func() {
		sent.Add(1)
		assert.NoError(t, c.send("/"))
		time.Sleep(10 * time.Millisecond)
	})
	old.HandOver(adoptInto(nu))
	res := drainAsync(old, context.Background())
	var closed bool
	for i := 0; i < 10 && !closed; i++ {
		resp, body, err := c.recv()
		require.NoError(t, err, "response %d", i)
		assert.Equal(t, "old", body)
		closed = resp.Close
	}
	assert.True(t, closed, "never told to close")
	assert.Equal(t, int32(3), sent.Load(), "tries")
	r := recvWithin(t, res, "Drain")
	require.NoError(t, r.err)
	assert.Equal(t, listener.DrainStats{Conns: 1, ClosedByPeerOrServer: 1, Duration: r.stats.Duration}, r.stats)
	assert.Zero(t, nu.Counts().Adopted)
}

// When the other process takes nothing (send fails), the drain goes on as
// without a hand-over: a request that arrives is answered with
// "Connection: close", idle connections are closed after the grace (the
// one whose request was in flight too: its response was under way).
func TestHandOverSendFails(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	failed := make(chan struct{}, 1)
	logged := slog.New(onMessage{"listener: hand-over failed; draining the rest here", failed})
	old, _ := generations(t, listener.Options{IdleGrace: 500 * time.Millisecond, Logger: logged}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "old")
	}))
	idle := make([]*client, 3)
	for i := range idle {
		idle[i] = dial(t, old.Addr())
		idle[i].mustGet(t, "/")
	}
	busy := dial(t, old.Addr())
	require.NoError(t, busy.send("/wait"))
	recvWithin(t, entered, "the request to reach the handler")
	old.untilCounts(t, listener.Counts{Idle: 3, Active: 1, Accepted: 4})
	old.HandOver(func([]int) error { return errors.New("the other process is gone") })
	res := drainAsync(old, context.Background())
	recvWithin(t, failed, "the hand-over to fail")
	resp, _ := idle[0].mustGet(t, "/")
	assert.True(t, resp.Close, "no Connection: close once the hand-over failed")
	close(release)
	resp, body, err := busy.recv()
	require.NoError(t, err)
	assert.Equal(t, "old", body)
	assert.False(t, resp.Close, "the drain reached a response under way")
	r := recvWithin(t, res, "Drain")
	require.NoError(t, r.err)
	assert.Equal(t, listener.DrainStats{Conns: 4, ClosedIdle: 3, ClosedByPeerOrServer: 1, Duration: r.stats.Duration}, r.stats)
	for _, c := range append(idle, busy) {
		c.waitClosed(t)
	}
}

// onMessage is a slog.Handler that signals ch on each record with message
// msg.
type onMessage struct {
	msg string
	ch  chan struct{}
}

func (h onMessage) Enabled(context.Context, slog.Level) bool { return true }
func (h onMessage) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h onMessage) WithGroup(string) slog.Handler            { return h }
func (h onMessage) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.ch <- struct{}{}:
		default:
		}
	}
	return nil
}

// TLS connections stay: their session state is in this process.
func TestHandOverTLSKept(t *testing.T) {
	base := listen(t)
	l := wrap(t, base, listener.Options{IdleGrace: 1})
	ts := httptest.NewUnstartedServer(http.HandlerFunc(ok))
	ts.Listener.Close()
	ts.Listener = l
	listener.ConfigureServer(ts.Config)
	ts.StartTLS()
	defer ts.Close()
	nc := dial(t, l.Addr())
	tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	c := &client{Conn: tc, br: bufio.NewReader(tc)}
	c.mustGet(t, "/")
	l.untilCounts(t, listener.Counts{Idle: 1, Accepted: 1})
	l.HandOver(func([]int) error {
		t.Error("a TLS connection was sent")
		return errors.New("no")
	})
	s := drainWithin(t, l)
	assert.Equal(t, listener.DrainStats{Conns: 1, ClosedIdle: 1, Duration: s.Duration}, s)
}

// Undrain ends the hand-over: a connection that was to move and is
// serving a request gets no "Connection: close" and is served on here.
func TestHandOverUndrain(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	old, nu := generations(t, listener.Options{IdleGrace: time.Hour}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "old")
	}))
	c := dial(t, old.Addr())
	require.NoError(t, c.send("/wait"))
	recvWithin(t, entered, "the request to reach the handler")
	old.HandOver(adoptInto(nu))
	res := drainAsync(old, context.Background())
	<-old.Draining()
	require.True(t, old.Undrain())
	r := recvWithin(t, res, "Drain")
	require.ErrorIs(t, r.err, listener.ErrUndrained)
	close(release)
	resp, _, err := c.recv()
	require.NoError(t, err)
	assert.False(t, resp.Close)
	old.untilCounts(t, listener.Counts{Idle: 1, Accepted: 1})
	_, body := c.mustGet(t, "/")
	assert.Equal(t, "old", body, "moved after Undrain")
	assert.Zero(t, old.Counts().HandedOver)
}

// Issue 14 d at the listener: clients whose header arrives in two parts
// across the drain are answered here (they are mid-request), and then
// move.
func TestHandOverSlowHeader(t *testing.T) {
	const (
		n     = 8
		delay = 600 * time.Millisecond
		req   = "GET /slow HTTP/1.1\r\nHost: test\r\nUser-Agent: slow-link\r\n\r\n"
	)
	old, nu := generations(t, listener.Options{IdleGrace: 300 * time.Millisecond}, nil)
	arrived := make(chan struct{}, 4*n)
	listener.SetArrivedHook(old.Listener, func() { arrived <- struct{}{} })
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, old.Addr())
		if i%2 == 1 {
			clients[i].mustGet(t, "/")
			recvWithin(t, arrived, "first request read")
		}
	}
	old.untilCounts(t, listener.Counts{New: n / 2, Idle: n / 2, Accepted: n})
	half := len(req) / 2
	for i, c := range clients {
		_, err := io.WriteString(c, req[:half])
		require.NoError(t, err, "client %d", i)
	}
	for range n {
		recvWithin(t, arrived, "first half read by the server")
	}
	old.HandOver(adoptInto(nu))
	res := drainAsync(old, context.Background())
	<-old.Draining()
	time.Sleep(delay)
	for i, c := range clients {
		_, err := io.WriteString(c, req[half:])
		require.NoError(t, err, "client %d", i)
	}
	for i, c := range clients {
		_, body, err := c.recv()
		if assert.NoError(t, err, "client %d", i) {
			assert.Equal(t, "old", body, "client %d", i)
		}
	}
	r := recvWithin(t, res, "Drain")
	require.NoError(t, r.err)
	assert.Equal(t, n, r.stats.HandedOver, "stats %+v", r.stats)
	for i, c := range clients {
		_, body := c.mustGet(t, "/")
		assert.Equal(t, "new", body, "client %d", i)
	}
}

// A raw TCP server opts in with Idle: its connection moves while it waits
// for the next line; its Read returns io.EOF and its Close returns nil.
func TestHandOverRaw(t *testing.T) {
	base := listen(t)
	old := wrap(t, dupListener(t, base), listener.Options{})
	nu := wrap(t, dupListener(t, base), listener.Options{})
	nu.Pause()
	require.NoError(t, base.Close())
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	echo := func(l *tracked, name string) {
		wg.Go(func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					br := bufio.NewReader(c)
					for {
						if br.Buffered() == 0 {
							listener.Idle(c)
						}
						line, err := br.ReadString('\n')
						if err != nil {
							assert.ErrorIs(t, err, io.EOF)
							assert.NoError(t, c.Close(), "%s: close", name)
							return
						}
						if _, err := io.WriteString(c, name+":"+line); err != nil {
							c.Close()
							return
						}
					}
				})
			}
		})
	}
	echo(old, "old")
	echo(nu, "new")
	c := dial(t, old.Addr())
	line := func(s string) string {
		_, err := io.WriteString(c, s+"\n")
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(timeNowPlusWait()))
		got, err := c.br.ReadString('\n')
		require.NoError(t, err)
		return strings.TrimSpace(got)
	}
	assert.Equal(t, "old:a", line("a"))
	old.HandOver(adoptInto(nu))
	s := drainWithin(t, old)
	assert.Equal(t, 1, s.HandedOver, "stats %+v", s)
	assert.Equal(t, "new:b", line("b"))
	c.Close()
	nu.Close()
	old.Close()
}

// Adopted connections come out of Accept first, paused or not, and an
// Accept blocked in the kernel is woken for them; after Close, Adopt
// fails and the ones not yet accepted are closed.
func TestAdopt(t *testing.T) {
	l := wrap(t, listen(t), listener.Options{})
	other := listen(t)
	defer other.Close()
	conn := func() (net.Conn, net.Conn) {
		c, err := net.Dial("tcp", other.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		s, err := other.Accept()
		require.NoError(t, err)
		return c, s
	}

	_, s1 := conn()
	l.Pause()
	require.NoError(t, l.Adopt(s1))
	got, err := l.Accept()
	require.NoError(t, err)
	assert.Equal(t, s1.RemoteAddr(), got.RemoteAddr())
	got.Close()

	l.Resume()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		assert.NoError(t, err)
		accepted <- c
	}()
	l.until(t, "Accept in the kernel", func() bool { return listener.InAccept(l.Listener) == 1 })
	_, s2 := conn()
	require.NoError(t, l.Adopt(s2))
	got = recvWithin(t, accepted, "the adopted conn")
	assert.Equal(t, s2.RemoteAddr(), got.RemoteAddr())
	got.Close()
	assert.Equal(t, uint64(2), l.Counts().Adopted)

	c3, s3 := conn()
	require.NoError(t, l.Adopt(s3))
	require.NoError(t, l.Close())
	_, s4 := conn()
	assert.ErrorIs(t, l.Adopt(s4), net.ErrClosed)
	s4.Close()
	require.NoError(t, c3.SetReadDeadline(timeNowPlusWait()))
	_, err = c3.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "adopted conn left open by Close")
}

// An adopted connection is an idle keep-alive connection, not a new one:
// until its first request the new server's idle timeout applies (none
// here), not its header timeout; once the request starts, the header
// timeout does.
func TestAdoptedTimeouts(t *testing.T) {
	base := listen(t)
	old := wrap(t, dupListener(t, base), listener.Options{IdleGrace: time.Hour})
	serve(t, old, answer("old"))
	nu := wrap(t, dupListener(t, base), listener.Options{})
	nu.Pause()
	srv := &http.Server{Handler: answer("new"), ReadHeaderTimeout: 100 * time.Millisecond}
	listener.ConfigureServer(srv)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(nu) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	require.NoError(t, base.Close())

	idle, slow := dial(t, old.Addr()), dial(t, old.Addr())
	idle.mustGet(t, "/")
	slow.mustGet(t, "/")
	old.HandOver(adoptInto(nu))
	s := drainWithin(t, old)
	require.Equal(t, 2, s.HandedOver)

	time.Sleep(400 * time.Millisecond) // 4 header timeouts
	_, body := idle.mustGet(t, "/")
	assert.Equal(t, "new", body, "an adopted idle connection was closed at the header timeout")

	_, err := io.WriteString(slow, "GET / HTTP/1.1\r\n")
	require.NoError(t, err)
	start := time.Now()
	slow.waitClosed(t)
	assert.Less(t, time.Since(start), 5*time.Second, "the header timeout did not apply once the request started")
}
