package upgradertest_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// waitTimeout bounds every wait for an event in these tests.
const waitTimeout = 20 * time.Second

// certs makes a certificate with WriteCert and returns the server's and the
// clients' TLS configurations.
func certs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	certFile, keyFile, pool, err := upgradertest.WriteCert(t.TempDir())
	require.NoError(t, err)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)
	return &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: pool}
}

// protocols serves HTTP/1.1 and HTTP/2: h2c with prior knowledge on a
// cleartext listener, h2 by ALPN on a TLS one.
func protocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// testServer serves a handler on two loopback listeners: addr (HTTP/1.1 and
// h2c) and tlsAddr (HTTP/1.1 and h2 over TLS). Its listeners record the
// connections they accept, so that a test can close them abruptly.
type testServer struct {
	addr, tlsAddr string
	clientTLS     *tls.Config // trusts the server
	plain, secure *http.Server
	lns           [2]*trackingListener
}

// startServer starts a testServer; configure, if not nil, changes both
// http.Servers before they serve. The servers are closed when the test
// ends.
func startServer(t *testing.T, h http.Handler, configure func(*http.Server)) *testServer {
	t.Helper()
	serverTLS, clientTLS := certs(t)
	s := &testServer{clientTLS: clientTLS}
	s.plain = &http.Server{Handler: h, Protocols: protocols()}
	s.secure = &http.Server{Handler: h, Protocols: protocols(), TLSConfig: serverTLS}
	for i, srv := range []*http.Server{s.plain, s.secure} {
		if configure != nil {
			configure(srv)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		s.lns[i] = &trackingListener{Listener: ln}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if srv.TLSConfig != nil {
				_ = srv.ServeTLS(s.lns[i], "", "")
			} else {
				_ = srv.Serve(s.lns[i])
			}
		}()
		t.Cleanup(func() {
			srv.Close()
			<-done
		})
	}
	s.addr, s.tlsAddr = s.lns[0].Addr().String(), s.lns[1].Addr().String()
	return s
}

// config is a load on s with the given workers.
func (s *testServer) config(workers map[upgradertest.Kind]int) upgradertest.Config {
	return upgradertest.Config{Addr: s.addr, TLSAddr: s.tlsAddr, TLS: s.clientTLS, Workers: workers}
}

// closeConns closes every connection the server accepted, at the TCP level:
// no GOAWAY, no TLS close_notify.
func (s *testServer) closeConns() {
	for _, ln := range s.lns {
		ln.closeConns()
	}
}

// trackingListener records the connections it accepts.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) closeConns() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

// startLoad runs the load cfg until the returned stop is called; stop
// returns the result.
func startLoad(t *testing.T, cfg upgradertest.Config) (stop func() *upgradertest.Result) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan *upgradertest.Result, 1)
	go func() { res <- upgradertest.Run(ctx, cfg) }()
	var once sync.Once
	var r *upgradertest.Result
	stop = func() *upgradertest.Result {
		once.Do(func() {
			cancel()
			select {
			case r = <-res:
			case <-time.After(waitTimeout + cfg.StreamTime):
				t.Fatal("the load did not stop")
			}
		})
		return r
	}
	t.Cleanup(func() { stop() })
	return stop
}

// counter counts events (requests a handler saw, connection states) and
// lets a test wait until a condition on the counts holds.
type counter struct {
	mu      sync.Mutex
	n       map[string]int
	changed chan struct{} // closed and replaced on every change
}

func newCounter() *counter {
	return &counter{n: map[string]int{}, changed: make(chan struct{})}
}

func (c *counter) add(key string, d int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[key] += d
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *counter) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// wait waits until cond holds on the counts, or fails the test after
// waitTimeout.
func (c *counter) wait(t *testing.T, what string, cond func(n map[string]int) bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok, changed := cond(c.n), c.changed
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			c.mu.Lock()
			defer c.mu.Unlock()
			t.Fatalf("timed out waiting for %s; counts %v", what, c.n)
		}
	}
}

// counting wraps h: it counts each request in c under "<path> <proto>"
// ("/pid h2", "/stream h2c", "/pid http1") when it starts.
func counting(h http.Handler, c *counter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto := "http1"
		switch {
		case r.ProtoMajor == 2 && r.TLS != nil:
			proto = "h2"
		case r.ProtoMajor == 2:
			proto = "h2c"
		}
		c.add(r.URL.Path+" "+proto, 1)
		h.ServeHTTP(w, r)
	})
}
