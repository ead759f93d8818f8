package upgradertest_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// checkClean asserts that r has samples of every kind in kinds, no failure
// and no unprocessed request, and that the connections all ended with the
// client.
func checkClean(t *testing.T, r *upgradertest.Result, kinds ...upgradertest.Kind) {
	t.Helper()
	assert.Zero(t, r.Failed(), "failures %v\n%s", r.Failures(), r.FirstFailures(10))
	assert.Zero(t, r.Unprocessed())
	for _, k := range kinds {
		assert.NotZero(t, r.Count(k), "no %s request", k)
	}
	assert.Equal(t, map[string]int{strconv.Itoa(os.Getpid()): r.Count(-1)}, r.PIDs())
	assert.Zero(t, r.H2.GoAway, "connections that got a GOAWAY")
	assert.Zero(t, r.H2.NoGoAway, "connections that ended without a GOAWAY")
}

// countOK counts the OK samples of kind k that asked for op.
func countOK(r *upgradertest.Result, k upgradertest.Kind, op upgradertest.Op) int {
	n := 0
	for _, s := range r.Samples {
		if s.Kind == k && s.Op == op && s.Class == upgradertest.OK {
			n++
		}
	}
	return n
}

// TestH2SteadyLoad: the HTTP/2 clients against net/http, with nothing
// happening to the server: no failure, one connection per worker.
func TestH2SteadyLoad(t *testing.T) {
	s := startServer(t, upgradertest.Handler(), nil)
	cfg := s.config(map[upgradertest.Kind]int{upgradertest.H2TLS: 2, upgradertest.H2C: 2, upgradertest.H2Idle: 4})
	cfg.H2Slow, cfg.H2Stream = 1, 1
	cfg.SlowTime, cfg.StreamTime = 20*time.Millisecond, 300*time.Millisecond
	cfg.IdleTime, cfg.IdleTLS = 50*time.Millisecond, true
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r := upgradertest.Run(ctx, cfg)

	checkClean(t, r, upgradertest.H2TLS, upgradertest.H2C, upgradertest.H2Idle)
	for _, k := range []upgradertest.Kind{upgradertest.H2TLS, upgradertest.H2C} {
		for _, op := range []upgradertest.Op{upgradertest.OpPID, upgradertest.OpSlow, upgradertest.OpStream} {
			assert.NotZero(t, countOK(r, k, op), "%s %s", k, op)
		}
	}
	assert.Greater(t, r.Count(upgradertest.H2Idle), 4*3, "H2Idle workers made no second burst")
	assert.Equal(t, 2+2+4, r.H2.Opened)
}

// TestH2IdleGoAway: net/http sends a GOAWAY to a connection idle for its
// IdleTimeout; an H2Idle worker then opens a new connection and fails
// nothing.
func TestH2IdleGoAway(t *testing.T) {
	s := startServer(t, upgradertest.Handler(), func(srv *http.Server) { srv.IdleTimeout = 100 * time.Millisecond })
	cfg := s.config(map[upgradertest.Kind]int{upgradertest.H2Idle: 3})
	// Two bursts of 3 requests, 1 to 3 s apart: the server's idle timeout
	// falls between them, with a second to spare.
	cfg.IdleTime, cfg.MaxRequests = 2*time.Second, 6
	r := upgradertest.Run(context.Background(), cfg)

	assert.Zero(t, r.Failed(), "failures %v\n%s", r.Failures(), r.FirstFailures(10))
	assert.Equal(t, 3*6, r.Count(upgradertest.H2Idle))
	// A GOAWAY that crossed the first request of the second burst would
	// leave it unprocessed; it does not fail.
	assert.Equal(t, 3*6, r.PIDs()[strconv.Itoa(os.Getpid())]+r.Unprocessed())
	assert.Equal(t, 3*2, r.H2.Opened, "each worker opens a connection per burst")
	assert.Equal(t, 3, r.H2.GoAway, "each first connection got a GOAWAY")
	assert.Zero(t, r.H2.NoGoAway)
}

// TestH2ShutdownDuringUpgrade hands the listeners from one generation of
// net/http servers to the next, as an upgrade does, and shuts the old one
// down while the H2TLS and H2C connections have a stream open: the old
// connections get a GOAWAY, their streams complete, the new streams go to
// the new generation, and nothing fails. The H2Idle connections, idle or
// not, get a GOAWAY too (net/http's Shutdown does not close an HTTP/2
// connection as idle: its http2 server sends the GOAWAY and closes it), so
// no reuse fails.
func TestH2ShutdownDuringUpgrade(t *testing.T) {
	serverTLS, clientTLS := certs(t)
	plain, secure := newHandoff(t), newHandoff(t)
	var gens []*counter
	start := func() *generation {
		c := newCounter()
		gens = append(gens, c)
		return startGeneration(t, counting(upgradertest.Handler(), c), serverTLS, plain, secure)
	}
	old := start()

	cfg := upgradertest.Config{
		Addr: plain.addr(), TLSAddr: secure.addr(), TLS: clientTLS,
		Workers:   map[upgradertest.Kind]int{upgradertest.H2TLS: 1, upgradertest.H2C: 1, upgradertest.H2Idle: 4},
		H2Streams: 4, H2Stream: 1, StreamTime: 2 * time.Second,
		IdleTime: 200 * time.Millisecond,
	}
	stop := startLoad(t, cfg)
	gens[0].wait(t, "a stream on each connection", func(n map[string]int) bool {
		return n["/stream h2"] >= 1 && n["/stream h2c"] >= 1
	})

	start() // the new generation accepts from now on
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, old.shutdown(ctx))
	gens[1].wait(t, "requests to the new generation", func(n map[string]int) bool {
		return n["/pid h2"] >= 20 && n["/pid h2c"] >= 20
	})
	r := stop()

	t.Logf("%d requests, %d unprocessed, connections %+v", r.Count(-1), r.Unprocessed(), r.H2)
	assert.Zero(t, r.Failed(), "failures %v\n%s", r.Failures(), r.FirstFailures(10))
	assert.GreaterOrEqual(t, r.H2.GoAway, 2, "the old generation's connections got a GOAWAY")
	assert.NotZero(t, r.Count(upgradertest.H2Idle))
	assert.Zero(t, r.H2.NoGoAway)
	assert.GreaterOrEqual(t, countOK(r, upgradertest.H2TLS, upgradertest.OpStream), 1)
	assert.GreaterOrEqual(t, countOK(r, upgradertest.H2C, upgradertest.OpStream), 1)
}

// TestH2AbruptClose closes the server's connections at the TCP level while
// streams are open: the clients see that no GOAWAY came.
func TestH2AbruptClose(t *testing.T) {
	c := newCounter()
	s := startServer(t, counting(upgradertest.Handler(), c), nil)
	cfg := s.config(map[upgradertest.Kind]int{upgradertest.H2TLS: 1, upgradertest.H2C: 1})
	cfg.H2Streams, cfg.H2Stream, cfg.StreamTime = 4, 1, time.Second
	stop := startLoad(t, cfg)
	c.wait(t, "a stream on each connection", func(n map[string]int) bool {
		return n["/stream h2"] >= 1 && n["/stream h2c"] >= 1
	})
	s.closeConns()
	after := c.get("/pid h2") + c.get("/pid h2c")
	c.wait(t, "requests on new connections", func(n map[string]int) bool {
		return n["/pid h2"]+n["/pid h2c"] >= after+20
	})
	r := stop()

	t.Logf("%d requests, failures %v, connections %+v", r.Count(-1), r.Failures(), r.H2)
	f := r.Failures()
	assert.GreaterOrEqual(t, f[upgradertest.NoGoAway], 2, "at least the two open streams")
	assert.Equal(t, map[upgradertest.Class]int{upgradertest.NoGoAway: f[upgradertest.NoGoAway]}, f, r.FirstFailures(10))
	assert.Zero(t, r.Unprocessed())
	streams := 0
	for _, s := range r.Samples {
		if s.Op == upgradertest.OpStream && s.Class == upgradertest.NoGoAway {
			streams++
		}
	}
	assert.Equal(t, 2, streams, "each worker's open stream failed")
	assert.Equal(t, 2, r.H2.NoGoAway)
	assert.Zero(t, r.H2.GoAway)
}

// TestH2IdleReuseAfterAbruptClose closes idle connections at the TCP level:
// each H2Idle worker fails the first request of its next burst, then opens
// a new connection.
func TestH2IdleReuseAfterAbruptClose(t *testing.T) {
	c := newCounter()
	states := map[net.Conn]http.ConnState{}
	s := startServer(t, counting(upgradertest.Handler(), c), func(srv *http.Server) {
		srv.ConnState = func(conn net.Conn, st http.ConnState) {
			c.mu.Lock() // counter's lock, so that wait sees states and counts together
			states[conn] = st
			c.mu.Unlock()
			c.add("state change", 1)
		}
	})
	cfg := s.config(map[upgradertest.Kind]int{upgradertest.H2Idle: 2})
	cfg.IdleTime, cfg.MaxRequests = 2*time.Second, 6
	done := make(chan *upgradertest.Result, 1)
	go func() { done <- upgradertest.Run(context.Background(), cfg) }()

	c.wait(t, "every first burst answered and its connection idle", func(n map[string]int) bool {
		if n["/pid h2c"] < 2*3 || len(states) < 2 {
			return false
		}
		for _, st := range states {
			if st != http.StateIdle {
				return false
			}
		}
		return true
	})
	s.closeConns()
	var r *upgradertest.Result
	select {
	case r = <-done:
	case <-time.After(waitTimeout):
		t.Fatal("the load did not end")
	}

	assert.Equal(t, 2*6, r.Count(upgradertest.H2Idle))
	assert.Equal(t, map[upgradertest.Class]int{upgradertest.NoGoAway: 2}, r.Failures(), r.FirstFailures(10))
	assert.Equal(t, 2, r.H2.NoGoAway)
	assert.Equal(t, 4, r.H2.Opened)
	assert.Zero(t, r.H2.GoAway)
}

// TestH2Unprocessed: against a raw HTTP/2 server that refuses the first
// stream with REFUSED_STREAM and answers the second with a GOAWAY whose
// last stream id is below it, both requests are counted Unprocessed, not
// failed, and the third goes on a new connection.
func TestH2Unprocessed(t *testing.T) {
	addr := rawH2Server(t, func(conn int, id uint32) string {
		switch {
		case conn == 0 && id == 1:
			return "refuse"
		case conn == 0:
			return "goaway"
		}
		return "ok"
	})
	r := upgradertest.Run(context.Background(), upgradertest.Config{
		Addr:      addr,
		Workers:   map[upgradertest.Kind]int{upgradertest.H2C: 1},
		H2Streams: 1, MaxRequests: 3,
	})
	require.Len(t, r.Samples, 3)
	classes := []upgradertest.Class{r.Samples[0].Class, r.Samples[1].Class, r.Samples[2].Class}
	assert.Equal(t, []upgradertest.Class{upgradertest.Unprocessed, upgradertest.Unprocessed, upgradertest.OK}, classes)
	assert.Contains(t, r.Samples[0].Err, "REFUSED_STREAM")
	assert.Contains(t, r.Samples[1].Err, "GOAWAY")
	assert.Zero(t, r.Failed())
	assert.Empty(t, r.FirstFailures(10))
	assert.Equal(t, 2, r.Unprocessed())
	assert.Equal(t, upgradertest.H2Conns{Opened: 2, GoAway: 1}, r.H2)
	assert.Equal(t, map[string]int{"7": 1}, r.PIDs())
}

// TestH2SettingsAndPing: the client answers the server's PING (the raw
// server answers nothing before) and encodes its headers for the server's
// header table size (the raw server's decoder fails the connection
// otherwise).
func TestH2SettingsAndPing(t *testing.T) {
	addr := rawH2Server(t, func(int, uint32) string { return "ok" })
	r := upgradertest.Run(context.Background(), upgradertest.Config{
		Addr:      addr,
		Workers:   map[upgradertest.Kind]int{upgradertest.H2C: 1},
		H2Streams: 1, MaxRequests: 5, Timeout: 5 * time.Second,
	})
	assert.Zero(t, r.Failed(), "failures %v\n%s", r.Failures(), r.FirstFailures(10))
	assert.Equal(t, map[string]int{"7": 5}, r.PIDs())
	assert.Equal(t, upgradertest.H2Conns{Opened: 1}, r.H2)
}

// TestH2FlowControl reads responses far larger than HTTP/2's initial
// flow-control windows (64 KiB a stream and a connection) from net/http,
// which sends no more than the client's WINDOW_UPDATEs allow.
func TestH2FlowControl(t *testing.T) {
	line := strings.Repeat("x", 1023) + "\n"
	big := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 256 {
			io.WriteString(w, line)
		}
		io.WriteString(w, "done\n")
	})
	s := startServer(t, big, nil)
	cfg := s.config(map[upgradertest.Kind]int{upgradertest.H2C: 1, upgradertest.H2TLS: 1})
	cfg.H2Streams, cfg.H2Stream, cfg.MaxRequests, cfg.Timeout = 2, 2, 6, 5*time.Second
	r := upgradertest.Run(context.Background(), cfg)
	assert.Zero(t, r.Failed(), "failures %v\n%s", r.Failures(), r.FirstFailures(10))
	assert.Equal(t, 12, countOK(r, upgradertest.H2C, upgradertest.OpStream)+countOK(r, upgradertest.H2TLS, upgradertest.OpStream))
	assert.Equal(t, 2, r.H2.Opened)
}

// TestMissingClient: a kind that needs Config.Clients fails, saying so.
func TestMissingClient(t *testing.T) {
	r := upgradertest.Run(context.Background(), upgradertest.Config{
		Addr:    "127.0.0.1:1",
		Workers: map[upgradertest.Kind]int{upgradertest.GRPCUnary: 1},
	})
	require.Len(t, r.Samples, 1)
	assert.Equal(t, upgradertest.Other, r.Samples[0].Class)
	assert.Contains(t, r.Samples[0].Err, "Config.Clients")
}

// rawH2Server serves h2c with prior knowledge, written on the Framer: for
// each request (the conn-th connection, stream id), do says "ok" (status
// 200, body "7\n"), "refuse" (RST_STREAM REFUSED_STREAM) or "goaway" (a
// GOAWAY whose last stream id is id-2). It sets a header table of
// rawTableSize bytes and sends a PING first, and answers no request
// before the PING's ACK.
func rawH2Server(t *testing.T, do func(conn int, id uint32) string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				serveRawH2(c, func(id uint32) string { return do(i, id) })
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func serveRawH2(c net.Conn, do func(id uint32) string) {
	defer c.Close()
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, preface); err != nil || string(preface) != http2.ClientPreface {
		return
	}
	fr := http2.NewFramer(c, c)
	// A header table of 40 bytes holds none of the client's fields: a
	// client that ignored the setting would refer to entries that this
	// decoder has evicted, and fail the connection.
	fr.ReadMetaHeaders = hpack.NewDecoder(rawTableSize, nil)
	ping := [8]byte{'h', 'a', 'n', 'd', 'o', 'f', 'f', '!'}
	if fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: rawTableSize}) != nil || fr.WritePing(false, ping) != nil {
		return
	}
	var hbuf bytes.Buffer
	henc := hpack.NewEncoder(&hbuf)
	answer := func(id uint32) error {
		switch do(id) {
		case "refuse":
			return fr.WriteRSTStream(id, http2.ErrCodeRefusedStream)
		case "goaway":
			return fr.WriteGoAway(id-2, http2.ErrCodeNo, nil)
		}
		hbuf.Reset()
		_ = henc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true}); err != nil {
			return err
		}
		return fr.WriteData(id, true, []byte("7\n"))
	}
	// Requests wait for the client's answer to the PING.
	pinged := false
	var pending []uint32
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				err = fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if f.IsAck() && f.Data == ping {
				pinged = true
				for _, id := range pending {
					if err = answer(id); err != nil {
						break
					}
				}
				pending = nil
			}
		case *http2.MetaHeadersFrame:
			if pinged {
				err = answer(f.StreamID)
			} else {
				pending = append(pending, f.StreamID)
			}
		}
		if err != nil {
			return
		}
	}
}

// rawTableSize is the header table size of rawH2Server.
const rawTableSize = 40

// handoff hands the connections that one listener accepts to the server of
// the current generation, as an upgrade does: the listening socket stays,
// the server that takes its connections changes.
type handoff struct {
	ln   net.Listener
	mu   sync.Mutex
	cur  *genListener
	next chan struct{} // closed and replaced when cur changes
}

func newHandoff(t *testing.T) *handoff {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	h := &handoff{ln: ln, next: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.dispatch()
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return h
}

func (h *handoff) addr() string { return h.ln.Addr().String() }

// dispatch hands each connection to the current generation's listener, or
// to the next one if the current one closes first.
func (h *handoff) dispatch() {
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		for handed := false; !handed; {
			h.mu.Lock()
			l, next := h.cur, h.next
			h.mu.Unlock()
			if l == nil {
				c.Close()
				break
			}
			select {
			case l.conns <- c:
				handed = true
			case <-l.closed:
				select {
				case <-next: // a new generation: try it
				case <-time.After(waitTimeout):
					c.Close()
					handed = true
				}
			}
		}
	}
}

// listen makes the listener of a new generation, which takes every
// connection from now on.
func (h *handoff) listen() *genListener {
	l := &genListener{conns: make(chan net.Conn), closed: make(chan struct{}), addr: h.ln.Addr()}
	h.mu.Lock()
	h.cur = l
	close(h.next)
	h.next = make(chan struct{})
	h.mu.Unlock()
	return l
}

// genListener is one generation's view of a handoff's listener.
type genListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	addr   net.Addr
}

func (l *genListener) Accept() (net.Conn, error) {
	select {
	case <-l.closed: // closed wins over a waiting connection
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *genListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *genListener) Addr() net.Addr { return l.addr }

// generation is a pair of net/http servers (h2c and TLS) serving one
// generation's listeners.
type generation struct {
	servers []*http.Server
}

func startGeneration(t *testing.T, h http.Handler, serverTLS *tls.Config, plain, secure *handoff) *generation {
	t.Helper()
	g := &generation{}
	for _, hf := range []*handoff{plain, secure} {
		srv := &http.Server{Handler: h, Protocols: protocols()}
		if hf == secure {
			srv.TLSConfig = serverTLS.Clone() // Serve changes it
		}
		ln := hf.listen()
		done := make(chan struct{})
		go func() {
			defer close(done)
			if srv.TLSConfig != nil {
				_ = srv.ServeTLS(ln, "", "")
			} else {
				_ = srv.Serve(ln)
			}
		}()
		t.Cleanup(func() {
			srv.Close()
			<-done
		})
		g.servers = append(g.servers, srv)
	}
	return g
}

// shutdown shuts both servers down (net/http's Shutdown: GOAWAY, then wait
// for the open streams).
func (g *generation) shutdown(ctx context.Context) error {
	errs := make(chan error, len(g.servers))
	for _, srv := range g.servers {
		go func() { errs <- srv.Shutdown(ctx) }()
	}
	var err error
	for range g.servers {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	return err
}
