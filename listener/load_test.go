package listener_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/handoff-go/handoff/listener"
)

// generation is one "process" serving the shared socket.
type generation struct {
	l      *tracked
	srv    *http.Server
	served atomic.Int64
	done   chan error
}

func startGeneration(t *testing.T, base *net.TCPListener, i int) *generation {
	t.Helper()
	// 1 s rather than 300 ms: on a loaded 2-core machine with -race a
	// blind-reuse client may stall between two requests longer than the
	// default; that would be a client bug (blind reuse), not ours.
	g := &generation{
		l:    wrap(t, dupListener(t, base), listener.Options{IdleGrace: time.Second}),
		done: make(chan error, 1),
	}
	body := fmt.Sprintf("gen %d", i)
	g.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.served.Add(1)
		if r.URL.Path == "/slow" {
			time.Sleep(2 * time.Millisecond) // some requests are in flight at the drain
		}
		io.WriteString(w, body)
	})}
	listener.ConfigureServer(g.srv)
	go func() { g.done <- g.srv.Serve(g.l) }()
	return g
}

// stop drains the generation the way the upgrader does: Drain, then
// Shutdown, then Close the listener.
func (g *generation) stop(t *testing.T) listener.DrainStats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	s, err := g.l.Drain(ctx)
	assert.NoError(t, err, "drain (stats %+v)", s)
	assert.Zero(t, g.l.Counts().Open(), "open after drain: counts %+v", g.l.Counts())
	assert.Zero(t, listener.Live(g.l.Listener), "tracked after drain")
	assert.NoError(t, g.srv.Shutdown(ctx), "shutdown")
	assert.NoError(t, g.l.Close(), "close")
	assert.ErrorIs(t, recvWithin(t, g.done, "Serve to return"), http.ErrServerClosed, "serve")
	return s
}

type clientKind int

const (
	blindReuse clientKind = iota // reuses a keep-alive conn without looking
	checkReuse                   // peeks for EOF before reusing
	newConn                      // one connection per request
)

func (k clientKind) String() string {
	return [...]string{"blind-reuse", "check-reuse", "new-conn"}[k]
}

// loadClient runs requests until stop is closed or max is reached. It
// counts successes in okCount and reports each failed request.
func loadClient(addr string, kind clientKind, id int, stop <-chan struct{}, max int, okCount *atomic.Int64, progress chan<- struct{}, fail func(error)) {
	var c *client
	closeConn := func() {
		if c != nil {
			c.Close()
			c = nil
		}
	}
	defer closeConn()
	path := "/"
	if id%4 == 0 {
		path = "/slow"
	}
	for i := 0; i < max; i++ {
		select {
		case <-stop:
			return
		default:
		}
		if c != nil && kind == checkReuse {
			// Non-blocking look: a server close shows as EOF.
			c.SetReadDeadline(time.Now())
			if _, err := c.br.Peek(1); !errors.Is(err, os.ErrDeadlineExceeded) {
				if err == nil {
					fail(fmt.Errorf("%v client %d: unsolicited data", kind, id))
				}
				closeConn()
			}
		}
		if c == nil {
			nc, err := net.DialTimeout("tcp", addr, wait)
			if err != nil {
				fail(fmt.Errorf("%v client %d: dial: %w", kind, id, err))
				continue
			}
			c = &client{Conn: nc, br: newReader(nc)}
		}
		resp, body, err := c.get(path)
		switch {
		case err != nil:
			fail(fmt.Errorf("%v client %d request %d: %w", kind, id, i, err))
			closeConn()
		case resp.StatusCode != http.StatusOK || len(body) < 5 || body[:4] != "gen ":
			fail(fmt.Errorf("%v client %d request %d: %d %q", kind, id, i, resp.StatusCode, body))
			closeConn()
		default:
			okCount.Add(1)
			if resp.Close || kind == newConn {
				closeConn()
			}
		}
		select {
		case progress <- struct{}{}:
		default:
		}
		time.Sleep(time.Millisecond) // pacing, to leave CPU to the servers
	}
}

// loadClients is the number of clients of TestLoadDrainCycles.
const loadClients = 16

// load runs loadClients clients of every kind against addr.
type load struct {
	oks      [loadClients]atomic.Int64
	progress chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu       sync.Mutex
	failures []error
}

// startLoad starts the clients, each bounded to max requests. Cleanup
// stops them.
func startLoad(t *testing.T, addr string, max int) *load {
	ld := &load{progress: make(chan struct{}, 1), stop: make(chan struct{})}
	fail := func(err error) {
		ld.mu.Lock()
		ld.failures = append(ld.failures, err)
		ld.mu.Unlock()
	}
	for i := range loadClients {
		kind := clientKind(i % 3)
		ld.wg.Go(func() { loadClient(addr, kind, i, ld.stop, max, &ld.oks[i], ld.progress, fail) })
	}
	t.Cleanup(ld.halt)
	return ld
}

// halt stops the clients and waits for them. It is idempotent.
func (ld *load) halt() {
	ld.stopOnce.Do(func() { close(ld.stop) })
	ld.wg.Wait()
}

// waitProgress waits until every client has completed n more requests.
func (ld *load) waitProgress(t *testing.T, n int64) {
	t.Helper()
	var from [loadClients]int64
	for i := range ld.oks {
		from[i] = ld.oks[i].Load()
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		done := true
		for i := range ld.oks {
			if ld.oks[i].Load()-from[i] < n {
				done = false
			}
		}
		if done {
			return
		}
		select {
		case <-ld.progress:
		case <-deadline.C:
			t.Fatalf("clients made no progress")
		}
	}
}

// TestLoadDrainCycles: 16 raw clients hammer a socket while generation
// after generation takes it over (a new Listener on a dup of the socket and
// a new http.Server start, then the old one drains and shuts down). No
// request may fail.
func TestLoadDrainCycles(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const (
		cycles      = 6
		perCycle    = 20    // requests each client completes per generation, at least
		maxRequests = 20000 // per client: bounds the test if something hangs
	)
	base := listen(t) // the socket; only its dups accept
	cur := startGeneration(t, base, 0)
	ld := startLoad(t, base.Addr().String(), maxRequests)

	var total listener.DrainStats
	for i := 1; i <= cycles; i++ {
		ld.waitProgress(t, perCycle)
		next := startGeneration(t, base, i)
		s := cur.stop(t)
		t.Logf("gen %d: served %d, drain %+v", i-1, cur.served.Load(), s)
		total.Conns += s.Conns
		total.ClosedIdle += s.ClosedIdle
		total.ClosedByPeerOrServer += s.ClosedByPeerOrServer
		total.Forced += s.Forced
		cur = next
	}
	ld.waitProgress(t, perCycle)
	ld.halt()
	cur.stop(t)

	var sum int64
	for i := range ld.oks {
		sum += ld.oks[i].Load()
	}
	t.Logf("%d requests ok over %d drains; drains total %+v", sum, cycles+1, total)
	ld.mu.Lock()
	defer ld.mu.Unlock()
	for _, err := range ld.failures {
		assert.NoError(t, err, "a failed request (%d in all)", len(ld.failures))
	}
	assert.Zero(t, total.Forced, "connections force-closed")
}
