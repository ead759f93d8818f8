package listener_test

import (
	"context"
	"net"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/listener"
)

// TestFinishServesBacklog: on a final stop, the connections the kernel has
// already queued are accepted and answered before the listener closes; only
// later connections are refused. Closing outright would reset the queued
// ones.
func TestFinishServesBacklog(t *testing.T) {
	l := wrap(t, listen(t), listener.Options{})
	l.Pause()
	srv := &http.Server{Handler: http.HandlerFunc(ok)}
	listener.ConfigureServer(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer srv.Close()

	// Five clients connect while nothing accepts: the kernel queues them,
	// and each sends its request.
	var clients []*client
	for range 5 {
		c := dial(t, l.Addr())
		require.NoError(t, c.send("/"))
		clients = append(clients, c)
	}
	require.Zero(t, l.Counts().Accepted, "accepted while paused")

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	require.NoError(t, l.Finish(ctx))
	require.NoError(t, l.Finish(ctx), "second Finish") // idempotent
	assert.Equal(t, uint64(5), l.Counts().Accepted, "queued connections Finish accepted")
	for i, c := range clients {
		resp, body, err := c.recv()
		require.NoError(t, err, "client %d", i)
		assert.Equal(t, http.StatusOK, resp.StatusCode, "client %d", i)
		assert.Equal(t, "ok", body, "client %d", i)
	}
	// The socket is closed now: a new connection is refused.
	if c, err := net.Dial("tcp", l.Addr().String()); !assert.Error(t, err, "connected after Finish") {
		c.Close()
	}
	_, err := l.Accept()
	assert.ErrorIs(t, err, net.ErrClosed, "Accept after Finish")
	_, err = l.Drain(ctx)
	assert.NoError(t, err, "Drain after Finish")
	// Serve ends with the closed listener's error, as after any Close.
	assert.ErrorIs(t, recvWithin(t, served, "Serve to return"), net.ErrClosed, "Serve")
	assert.NoError(t, srv.Shutdown(ctx), "Shutdown")
}
