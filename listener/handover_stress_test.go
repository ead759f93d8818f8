//go:build unix

package listener_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/listener"
)

// ledger records which generation answered each request id.
type ledger struct {
	mu    sync.Mutex
	by    map[string]int
	twice []string
}

func (lg *ledger) answer(id string, gen int) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	if prev, ok := lg.by[id]; ok {
		lg.twice = append(lg.twice, fmt.Sprintf("%s by %d and %d", id, prev, gen))
		return
	}
	lg.by[id] = gen
}

// handGen is one generation of TestHandOverStress: a tracked listener on
// a dup of the shared socket and its server, which records each request's
// id in the ledger.
type handGen struct {
	i    int
	l    *tracked
	srv  *http.Server
	done chan error
}

func startHandGen(t *testing.T, base *net.TCPListener, i int, lg *ledger) *handGen {
	t.Helper()
	g := &handGen{i: i, l: wrap(t, dupListener(t, base), listener.Options{IdleGrace: time.Second}), done: make(chan error, 1)}
	g.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lg.answer(r.URL.Query().Get("id"), i)
		if r.URL.Path == "/slow" {
			time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
		}
		fmt.Fprintf(w, "gen %d", i)
	})}
	listener.ConfigureServer(g.srv)
	go func() { g.done <- g.srv.Serve(g.l) }()
	return g
}

// retire drains g, handing its connections to next, as an upgrade does.
func (g *handGen) retire(t *testing.T, next *handGen) listener.DrainStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if next != nil {
		g.l.HandOver(adoptInto(next.l))
	}
	s, err := g.l.Drain(ctx)
	assert.NoError(t, err, "drain of generation %d (stats %+v)", g.i, s)
	assert.NoError(t, g.srv.Shutdown(ctx), "shutdown")
	assert.NoError(t, g.l.Close(), "close")
	assert.ErrorIs(t, recvWithin(t, g.done, "Serve to return"), http.ErrServerClosed)
	return s
}

// TestHandOverStress (issue 14 e): 24 raw clients (keep-alive reusing
// blindly, keep-alive checking first, new connection per request) send
// requests with unique ids, with random short pauses, while generation
// after generation hands its connections to the next and drains. No
// request fails, none is answered twice, every answer is in the ledger,
// and the keep-alive clients hardly ever have to dial again.
func TestHandOverStress(t *testing.T) {
	cycles := 12
	if testing.Short() {
		cycles = 4
	}
	const clients = 24
	base := listen(t)
	lg := &ledger{by: map[string]int{}}
	cur := startHandGen(t, base, 0, lg)
	addr := base.Addr().String()

	var (
		oks, dials atomic.Int64
		stop       = make(chan struct{})
		wg         sync.WaitGroup
		mu         sync.Mutex
		failures   []error
	)
	fail := func(err error) {
		mu.Lock()
		failures = append(failures, err)
		mu.Unlock()
	}
	for id := range clients {
		kind := clientKind(id % 3)
		wg.Go(func() {
			var c *client
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for seq := 0; seq < 100000; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				if c != nil && kind == checkReuse {
					c.SetReadDeadline(time.Now())
					if _, err := c.br.Peek(1); !errors.Is(err, os.ErrDeadlineExceeded) {
						c.Close()
						c = nil
					}
				}
				if c == nil {
					nc, err := net.DialTimeout("tcp", addr, wait)
					if err != nil {
						fail(fmt.Errorf("client %d: dial: %w", id, err))
						return
					}
					if kind != newConn && seq > 0 {
						dials.Add(1)
					}
					c = &client{Conn: nc, br: newReader(nc)}
				}
				path := "/"
				if rand.IntN(4) == 0 {
					path = "/slow"
				}
				reqID := fmt.Sprintf("%d-%d", id, seq)
				resp, body, err := c.get(path + "?id=" + reqID)
				if err != nil || resp.StatusCode != http.StatusOK || len(body) < 5 || body[:4] != "gen " {
					fail(fmt.Errorf("%v client %d request %s: %v %q", kind, id, reqID, err, body))
					c.Close()
					c = nil
					continue
				}
				oks.Add(1)
				if resp.Close || kind == newConn {
					c.Close()
					c = nil
				}
				if d := rand.IntN(3); d > 0 {
					time.Sleep(time.Duration(d) * time.Millisecond)
				}
			}
		})
	}

	var total listener.DrainStats
	progress := func() {
		from := oks.Load()
		deadline := time.Now().Add(wait)
		for oks.Load() < from+200 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	for i := 1; i <= cycles; i++ {
		progress()
		next := startHandGen(t, base, i, lg)
		s := cur.retire(t, next)
		total.Conns += s.Conns
		total.HandedOver += s.HandedOver
		total.ClosedIdle += s.ClosedIdle
		total.ClosedByPeerOrServer += s.ClosedByPeerOrServer
		total.Forced += s.Forced
		cur = next
	}
	progress()
	close(stop)
	wg.Wait()
	cur.retire(t, nil)

	t.Logf("%d requests over %d hand-overs; drains %+v; keep-alive clients dialled again %d times",
		oks.Load(), cycles, total, dials.Load())
	mu.Lock()
	defer mu.Unlock()
	for _, err := range failures {
		assert.NoError(t, err, "a failed request (%d in all)", len(failures))
	}
	lg.mu.Lock()
	defer lg.mu.Unlock()
	assert.Empty(t, lg.twice, "requests answered twice")
	assert.Equal(t, int(oks.Load()), len(lg.by), "answers the clients got vs requests the servers answered")
	assert.Zero(t, total.Forced)
	assert.Positive(t, total.HandedOver)
	require.NotZero(t, oks.Load())
}
