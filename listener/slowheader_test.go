package listener_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/listener"
)

// TestDrainSlowHeaderNotClosed: clients on a slow link send the first half
// of a request header before the drain starts and the rest two graces
// later. The server read the first half: the idle closer must not close
// any of those connections, however long the rest takes. Half the clients
// are fresh connections, half keep-alive ones after a first request.
func TestDrainSlowHeaderNotClosed(t *testing.T) {
	const (
		grace = 300 * time.Millisecond
		delay = 600 * time.Millisecond // the slow link: the rest comes after two graces
		n     = 8
		req   = "GET /slow HTTP/1.1\r\nHost: test\r\nUser-Agent: slow-link\r\n\r\n"
	)
	l := wrap(t, listen(t), listener.Options{IdleGrace: grace})
	arrived := make(chan struct{}, 4*n) // never full: one per request at most
	listener.SetArrivedHook(l.Listener, func() { arrived <- struct{}{} })
	serve(t, l, http.HandlerFunc(ok))

	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dial(t, l.Addr())
		if i%2 == 1 {
			clients[i].mustGet(t, "/")
			recvWithin(t, arrived, "first request read")
		}
	}
	l.untilCounts(t, listener.Counts{New: n / 2, Idle: n / 2, Accepted: n})

	half := len(req) / 2
	for i, c := range clients {
		_, err := io.WriteString(c, req[:half])
		require.NoError(t, err, "client %d", i)
	}
	for range n {
		recvWithin(t, arrived, "first half read by the server")
	}

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res := drainAsync(l, ctx)
	recvWithin(t, l.Draining(), "drain to start")
	time.Sleep(delay)
	for i, c := range clients {
		_, err := io.WriteString(c, req[half:])
		require.NoError(t, err, "client %d", i)
	}

	answered := 0
	for i, c := range clients {
		resp, body, err := c.recv()
		if !assert.NoError(t, err, "client %d", i) {
			continue
		}
		assert.Equal(t, http.StatusOK, resp.StatusCode, "client %d", i)
		assert.Equal(t, "ok", body, "client %d", i)
		assert.True(t, resp.Close, "client %d: no Connection: close while draining", i)
		answered++
	}
	assert.Equal(t, n, answered, "clients answered")

	r := recvWithin(t, res, "Drain")
	require.NoError(t, r.err)
	assert.Equal(t, listener.DrainStats{Conns: n, ClosedByPeerOrServer: n, Duration: r.stats.Duration}, r.stats)
}
