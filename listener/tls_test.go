package listener_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/listener"
)

// TestTLS: with TLS on top of the Listener (as ServeTLS does), the hooks
// find the tracked conn under the *tls.Conn, and Drain works the same.
func TestTLS(t *testing.T) {
	l := wrap(t, listen(t), listener.Options{IdleGrace: 1})
	ts := httptest.NewUnstartedServer(http.HandlerFunc(ok))
	ts.Listener.Close()
	ts.Listener = l
	listener.ConfigureServer(ts.Config)
	ts.StartTLS()
	defer ts.Close()

	nc := dial(t, l.Addr())
	tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	c := &client{Conn: tc, br: bufio.NewReader(tc)}
	_, body := c.mustGet(t, "/")
	require.Equal(t, "ok", body)
	l.untilCounts(t, listener.Counts{Idle: 1, Accepted: 1})
	s, err := l.Drain(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 1, s.ClosedIdle, "stats %+v", s)
	require.NoError(t, c.SetReadDeadline(timeNowPlusWait()))
	_, err = c.br.ReadByte()
	assert.Error(t, err, "TLS conn still open")
}

// TestConfigureServerTwice: installing the hooks twice changes nothing.
func TestConfigureServerTwice(t *testing.T) {
	l := wrap(t, listen(t), listener.Options{IdleGrace: 1 << 62})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})}
	listener.ConfigureServer(srv)
	listener.ConfigureServer(srv)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	c := dial(t, l.Addr())
	c.mustGet(t, "/")
	l.untilCounts(t, listener.Counts{Idle: 1, Accepted: 1})
	res := drainAsync(l, context.Background())
	<-l.Draining()
	resp, _ := c.mustGet(t, "/")
	assert.True(t, resp.Close, "no Connection: close while draining")
	r := recvWithin(t, res, "Drain")
	require.NoError(t, r.err)
	assert.Equal(t, 1, r.stats.ClosedByPeerOrServer, "stats %+v", r.stats)
	require.NoError(t, srv.Shutdown(context.Background()))
	<-done
}
