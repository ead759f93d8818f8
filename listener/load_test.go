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
	if err != nil {
		t.Errorf("drain: %v (stats %+v)", err, s)
	}
	if c, n := g.l.Counts(), listener.Live(g.l.Listener); c.Open() != 0 || n != 0 {
		t.Errorf("after drain: counts %+v, %d tracked", c, n)
	}
	if err := g.srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := g.l.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := recvWithin(t, g.done, "Serve to return"); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("serve: %v", err)
	}
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

// TestLoadDrainCycles: 16 raw clients hammer a socket while generation
// after generation takes it over (a new Listener on a dup of the socket and
// a new http.Server start, then the old one drains and shuts down). No
// request may fail.
func TestLoadDrainCycles(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const (
		clients     = 16
		cycles      = 6
		perCycle    = 20    // requests each client completes per generation, at least
		maxRequests = 20000 // per client: bounds the test if something hangs
	)
	base := listen(t) // the socket; only its dups accept
	addr := base.Addr().String()

	var (
		mu       sync.Mutex
		failures []error
		oks      [clients]atomic.Int64
		wg       sync.WaitGroup
		stop     = make(chan struct{})
		progress = make(chan struct{}, 1)
	)
	fail := func(err error) {
		mu.Lock()
		failures = append(failures, err)
		mu.Unlock()
	}

	cur := startGeneration(t, base, 0)
	for i := range clients {
		kind := clientKind(i % 3)
		wg.Go(func() { loadClient(addr, kind, i, stop, maxRequests, &oks[i], progress, fail) })
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()

	// waitProgress waits until every client has completed n more requests.
	waitProgress := func(n int64) {
		var from [clients]int64
		for i := range oks {
			from[i] = oks[i].Load()
		}
		deadline := time.NewTimer(wait)
		defer deadline.Stop()
		for {
			done := true
			for i := range oks {
				if oks[i].Load()-from[i] < n {
					done = false
				}
			}
			if done {
				return
			}
			select {
			case <-progress:
			case <-deadline.C:
				t.Fatalf("clients made no progress")
			}
		}
	}

	var total listener.DrainStats
	for i := 1; i <= cycles; i++ {
		waitProgress(perCycle)
		next := startGeneration(t, base, i)
		s := cur.stop(t)
		t.Logf("gen %d: served %d, drain %+v", i-1, cur.served.Load(), s)
		total.Conns += s.Conns
		total.ClosedIdle += s.ClosedIdle
		total.ClosedByPeerOrServer += s.ClosedByPeerOrServer
		total.Forced += s.Forced
		cur = next
	}
	waitProgress(perCycle)
	close(stop)
	wg.Wait()
	stop = make(chan struct{}) // for the deferred close
	cur.stop(t)

	var sum int64
	for i := range oks {
		sum += oks[i].Load()
	}
	t.Logf("%d requests ok over %d drains; drains total %+v", sum, cycles+1, total)
	mu.Lock()
	defer mu.Unlock()
	for _, err := range failures {
		t.Error(err)
	}
	if len(failures) > 0 {
		t.Fatalf("%d failed requests", len(failures))
	}
	if total.Forced != 0 {
		t.Fatalf("%d connections force-closed", total.Forced)
	}
}
