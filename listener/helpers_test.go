package listener_test

import (
	"bufio"
	"context"
	"fmt"
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

// wait bounds every wait in these tests: generous, because the machine is
// shared; a test that needs it has failed anyway.
const wait = 20 * time.Second

// tracked is a Listener under test plus a channel that is signalled after
// every change of its tracked state.
type tracked struct {
	*listener.Listener
	changed chan struct{}
}

func listen(t testing.TB) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	return ln
}

// dupListener returns a second listener on the same socket as ln, as the
// next process of an upgrade would get it.
func dupListener(t testing.TB, ln *net.TCPListener) net.Listener {
	t.Helper()
	f, err := ln.File()
	require.NoError(t, err)
	defer f.Close()
	ln2, err := net.FileListener(f)
	require.NoError(t, err)
	return ln2
}

func wrap(t testing.TB, ln net.Listener, opts listener.Options) *tracked {
	t.Helper()
	tl := &tracked{Listener: listener.Wrap(ln, opts), changed: make(chan struct{}, 1)}
	listener.SetChangedHook(tl.Listener, func() {
		select {
		case tl.changed <- struct{}{}:
		default:
		}
	})
	t.Cleanup(func() { tl.Close() })
	return tl
}

// until waits for cond to hold, re-checking after every change of l.
func (l *tracked) until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-l.changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; counts %+v", what, l.Counts())
		}
	}
}

func (l *tracked) untilCounts(t testing.TB, want listener.Counts) {
	t.Helper()
	l.until(t, fmt.Sprintf("counts %+v", want), func() bool {
		got := l.Counts()
		return got == want
	})
}

// serve serves l with h on a fresh http.Server set up by ConfigureServer.
// Cleanup shuts the server down and waits for Serve to return.
func serve(t testing.TB, l net.Listener, h http.Handler) *http.Server {
	t.Helper()
	srv := &http.Server{Handler: h}
	listener.ConfigureServer(srv)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if !assert.NoError(t, srv.Shutdown(ctx), "shutdown") {
			srv.Close()
		}
		assert.ErrorIs(t, <-done, http.ErrServerClosed, "serve")
	})
	return srv
}

// client is a raw HTTP/1.1 client on one connection: no retries, no
// pooling, nothing hidden.
type client struct {
	net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, addr net.Addr) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), wait)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &client{Conn: c, br: bufio.NewReader(c)}
}

func (c *client) send(path string) error {
	if err := c.SetWriteDeadline(time.Now().Add(wait)); err != nil {
		return err
	}
	_, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: test\r\n\r\n")
	return err
}

// recv reads one whole response.
func (c *client) recv() (*http.Response, string, error) {
	if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

func (c *client) get(path string) (*http.Response, string, error) {
	if err := c.send(path); err != nil {
		return nil, "", err
	}
	return c.recv()
}

func (c *client) mustGet(t testing.TB, path string) (*http.Response, string) {
	t.Helper()
	resp, body, err := c.get(path)
	require.NoError(t, err, "GET %s", path)
	return resp, body
}

// waitClosed waits for the server to close c: a read returns EOF (or a
// reset), not a timeout and not data.
func (c *client) waitClosed(t testing.TB) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	n, err := c.br.Read(make([]byte, 1))
	require.Zero(t, n, "connection not closed by server: data arrived")
	require.Error(t, err, "connection not closed by server")
	require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "connection not closed by server")
}

func ok(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }

// recvWithin receives from ch, failing the test after the wait bound.
func recvWithin[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func newReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

func timeNowPlusWait() time.Time { return time.Now().Add(wait) }
