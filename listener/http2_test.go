package listener_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/handoff-go/handoff/listener"
)

// h2Mode is how a test server speaks HTTP/2: over TLS (ALPN "h2") or in
// clear text with prior knowledge (h2c). Both servers speak HTTP/1.1 too.
type h2Mode string

const (
	modeTLS h2Mode = "tls"
	modeH2C h2Mode = "h2c"
)

var h2Modes = []h2Mode{modeTLS, modeH2C}

// testCert is a self-signed certificate for 127.0.0.1, made once per test.
type testCert struct {
	cert tls.Certificate
	pool *x509.CertPool
}

func newTestCert(t testing.TB) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "listener test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return testCert{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool: pool}
}

// h2Server is an http.Server set up by ConfigureServer that speaks
// HTTP/1.1 and HTTP/2 in mode on l. Cleanup shuts it down.
type h2Server struct {
	*http.Server
	mode h2Mode
	cert testCert
	l    *tracked
}

func serveH2(t *testing.T, l *tracked, h http.Handler, mode h2Mode) *h2Server {
	t.Helper()
	s := &h2Server{Server: &http.Server{Handler: h}, mode: mode, l: l}
	var protos http.Protocols
	protos.SetHTTP1(true)
	if mode == modeTLS {
		s.cert = newTestCert(t)
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{s.cert.cert}}
		protos.SetHTTP2(true)
	} else {
		protos.SetUnencryptedHTTP2(true)
	}
	s.Protocols = &protos
	listener.ConfigureServer(s.Server)
	done := make(chan error, 1)
	go func() {
		if mode == modeTLS {
			done <- s.ServeTLS(l, "", "")
		} else {
			done <- s.Serve(l)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if !assert.NoError(t, s.Shutdown(ctx), "shutdown") {
			s.Close()
		}
		assert.ErrorIs(t, <-done, http.ErrServerClosed, "serve")
	})
	return s
}

// dial opens a raw connection to the server, through TLS in modeTLS with
// ALPN protocol proto.
func (s *h2Server) dial(t *testing.T, proto string) net.Conn {
	t.Helper()
	nc := dial(t, s.l.Addr()).Conn
	if s.mode != modeTLS {
		return nc
	}
	tc := tls.Client(nc, &tls.Config{RootCAs: s.cert.pool, ServerName: "127.0.0.1", NextProtos: []string{proto}})
	require.NoError(t, tc.SetDeadline(time.Now().Add(wait)))
	require.NoError(t, tc.Handshake())
	require.Equal(t, proto, tc.ConnectionState().NegotiatedProtocol)
	require.NoError(t, tc.SetDeadline(time.Time{}))
	return tc
}

// dialHTTP1 opens a raw HTTP/1.1 client connection.
func (s *h2Server) dialHTTP1(t *testing.T) *client {
	t.Helper()
	c := s.dial(t, "http/1.1")
	return &client{Conn: c, br: bufio.NewReader(c)}
}

// transport returns an http.Transport that speaks only HTTP/1.1 (h2 false)
// or only HTTP/2 (h2 true) to the server, and the URL to use.
func (s *h2Server) transport(t *testing.T, h2 bool) (*http.Transport, string) {
	t.Helper()
	var protos http.Protocols
	tr := &http.Transport{Protocols: &protos}
	t.Cleanup(tr.CloseIdleConnections)
	switch {
	case !h2:
		protos.SetHTTP1(true)
	case s.mode == modeTLS:
		protos.SetHTTP2(true)
	default:
		protos.SetUnencryptedHTTP2(true)
	}
	scheme := "http"
	if s.mode == modeTLS {
		scheme = "https"
		tr.TLSClientConfig = &tls.Config{RootCAs: s.cert.pool}
	}
	return tr, scheme + "://" + s.l.Addr().String()
}

// h2Frame is what a raw HTTP/2 client saw of one frame.
type h2Frame struct {
	typ        http2.FrameType
	stream     uint32
	endStream  bool
	status     string // HEADERS
	data       string // DATA
	code       http2.ErrCode
	lastStream uint32 // GOAWAY
}

func (f h2Frame) String() string {
	switch f.typ {
	case http2.FrameGoAway:
		return fmt.Sprintf("GOAWAY(last=%d, %v)", f.lastStream, f.code)
	case http2.FrameHeaders:
		return fmt.Sprintf("HEADERS(%d, :status %s, end=%v)", f.stream, f.status, f.endStream)
	case http2.FrameData:
		return fmt.Sprintf("DATA(%d, %q, end=%v)", f.stream, f.data, f.endStream)
	}
	return fmt.Sprintf("%v(%d)", f.typ, f.stream)
}

// h2Client is a raw HTTP/2 client built on x/net's Framer: it shows every
// frame the server sends, GOAWAY included, and when the connection ends.
type h2Client struct {
	net.Conn
	fr     *http2.Framer
	hbuf   bytes.Buffer
	enc    *hpack.Encoder
	scheme string
	frames chan h2Frame // every frame read, closed at the end
	err    error        // what ended reading (io.EOF for a clean close); set before frames is closed
}

// dialH2 opens an HTTP/2 connection: the client preface, SETTINGS both
// ways. A goroutine then reads frames until the connection ends; cleanup
// closes the connection and waits for it.
func (s *h2Server) dialH2(t *testing.T) *h2Client {
	t.Helper()
	c := &h2Client{Conn: s.dial(t, "h2"), scheme: "http", frames: make(chan h2Frame, 256)}
	if s.mode == modeTLS {
		c.scheme = "https"
	}
	c.enc = hpack.NewEncoder(&c.hbuf)
	c.fr = http2.NewFramer(c.Conn, c.Conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	require.NoError(t, c.SetDeadline(time.Now().Add(wait)))
	_, err := io.WriteString(c, http2.ClientPreface)
	require.NoError(t, err)
	require.NoError(t, c.fr.WriteSettings())
	f, err := c.fr.ReadFrame()
	require.NoError(t, err)
	sf, ok := f.(*http2.SettingsFrame)
	require.True(t, ok && !sf.IsAck(), "first frame from the server: %v", f)
	require.NoError(t, c.fr.WriteSettingsAck())
	require.NoError(t, c.SetDeadline(time.Time{}))

	done := make(chan struct{})
	go func() {
		defer close(done)
		c.readLoop()
	}()
	t.Cleanup(func() {
		c.Close()
		recvWithin(t, done, "h2 client's reader to end")
	})
	return c
}

func (c *h2Client) readLoop() {
	defer close(c.frames)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.err = err
			return
		}
		h := h2Frame{typ: f.Header().Type, stream: f.Header().StreamID}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			h.status, h.endStream = f.PseudoValue("status"), f.StreamEnded()
		case *http2.DataFrame:
			h.data, h.endStream = string(f.Data()), f.StreamEnded()
		case *http2.GoAwayFrame:
			h.code, h.lastStream = f.ErrCode, f.LastStreamID
		case *http2.RSTStreamFrame:
			h.code = f.ErrCode
		}
		c.frames <- h
	}
}

// get sends a GET for path on stream id.
func (c *h2Client) get(t *testing.T, id uint32, path string) {
	t.Helper()
	c.hbuf.Reset()
	for _, hf := range [][2]string{{":method", "GET"}, {":scheme", c.scheme}, {":authority", "test"}, {":path", path}} {
		require.NoError(t, c.enc.WriteField(hpack.HeaderField{Name: hf[0], Value: hf[1]}))
	}
	require.NoError(t, c.SetWriteDeadline(time.Now().Add(wait)))
	require.NoError(t, c.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: id, BlockFragment: c.hbuf.Bytes(), EndStream: true, EndHeaders: true,
	}))
}

// response reads frames until the response on stream id has ended, and
// returns its status and body. It fails on a GOAWAY or a reset.
func (c *h2Client) response(t *testing.T, id uint32) (status, body string) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				// Not require.True: c.err may be read only once frames is closed.
				t.Fatalf("HTTP/2 connection ended: %v", c.err)
			}
			require.NotContains(t, []http2.FrameType{http2.FrameGoAway, http2.FrameRSTStream}, f.typ, "unexpected %v", f)
			if f.stream != id {
				continue
			}
			if f.typ == http2.FrameHeaders {
				status = f.status
			}
			body += f.data
			if f.endStream {
				return status, body
			}
		case <-deadline.C:
			t.Fatalf("no response on stream %d", id)
		}
	}
}

// untilEnd returns every frame read until the connection ended, and the
// error that ended it.
func (c *h2Client) untilEnd(t *testing.T) ([]h2Frame, error) {
	t.Helper()
	var got []h2Frame
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return got, c.err
			}
			got = append(got, f)
		case <-deadline.C:
			t.Fatalf("connection still open; frames so far: %v", got)
		}
	}
}

// quietFor fails if a GOAWAY or RST_STREAM arrives, or the connection
// ends, within d: a bounded look, for what must not happen.
func (c *h2Client) quietFor(t *testing.T, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				// Not require.True: c.err may be read only once frames is closed.
				t.Fatalf("HTTP/2 connection ended: %v", c.err)
			}
			require.NotContains(t, []http2.FrameType{http2.FrameGoAway, http2.FrameRSTStream}, f.typ, "unexpected %v", f)
		case <-timer.C:
			return
		}
	}
}

func findFrame(frames []h2Frame, typ http2.FrameType) (h2Frame, int) {
	for i, f := range frames {
		if f.typ == typ {
			return f, i
		}
	}
	return h2Frame{}, -1
}

// TestHTTP2IdleWaitsForShutdown: during a drain the idle closer closes an
// idle HTTP/1 connection after the grace but never an idle HTTP/2 one.
// Await says when only HTTP/2 is left; then Shutdown sends the HTTP/2
// connection a GOAWAY before it closes it, and Drain completes.
func TestHTTP2IdleWaitsForShutdown(t *testing.T) {
	for _, mode := range h2Modes {
		t.Run(string(mode), func(t *testing.T) {
			const grace = 50 * time.Millisecond
			l := wrap(t, listen(t), listener.Options{IdleGrace: grace})
			srv := serveH2(t, l, http.HandlerFunc(ok), mode)

			h1 := srv.dialHTTP1(t)
			resp, _ := h1.mustGet(t, "/")
			require.Equal(t, 1, resp.ProtoMajor)
			// A request first: the HTTP/2 connection then goes idle with
			// nothing more to read, as an HTTP/1 one does.
			h2 := srv.dialH2(t)
			h2.get(t, 1, "/")
			status, body := h2.response(t, 1)
			require.Equal(t, "200", status)
			require.Equal(t, "ok", body)
			l.untilCounts(t, listener.Counts{Idle: 2, HTTP2: 1, Accepted: 2})

			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			res := drainAsync(l, ctx)
			require.NoError(t, l.Await(ctx, func(c listener.Counts) bool { return c.Open()-c.HTTP2 == 0 }))
			h1.waitClosed(t)
			assert.Equal(t, listener.Counts{Idle: 1, HTTP2: 1, Accepted: 2}, l.Counts())

			// The HTTP/2 connection outlives several graces: no GOAWAY,
			// no close, and Drain still waits for it.
			h2.quietFor(t, 4*grace)
			assert.Equal(t, listener.Counts{Idle: 1, HTTP2: 1, Accepted: 2}, l.Counts())
			notReturned(t, res)

			shut := make(chan error, 1)
			go func() { shut <- srv.Shutdown(ctx) }()
			frames, err := h2.untilEnd(t)
			assert.ErrorIs(t, err, io.EOF, "HTTP/2 connection not closed cleanly; frames %v", frames)
			ga, _ := findFrame(frames, http2.FrameGoAway)
			assert.Equal(t, http2.FrameGoAway, ga.typ, "no GOAWAY before the close; frames %v", frames)
			assert.Equal(t, http2.ErrCodeNo, ga.code)
			require.NoError(t, recvWithin(t, shut, "Shutdown"))

			r := recvWithin(t, res, "Drain")
			require.NoError(t, r.err)
			assert.Equal(t, listener.DrainStats{Conns: 2, ClosedIdle: 1, ClosedByPeerOrServer: 1, Duration: r.stats.Duration}, r.stats)
			assert.Equal(t, listener.Counts{Accepted: 2}, l.Counts())
		})
	}
}

// TestHTTP2RequestWhileDraining: a request on a draining HTTP/2
// connection is answered in full, the connection gets a GOAWAY that
// covers the request's stream, and the server then closes it: Drain
// completes without Shutdown.
func TestHTTP2RequestWhileDraining(t *testing.T) {
	for _, mode := range h2Modes {
		t.Run(string(mode), func(t *testing.T) {
			l := wrap(t, listen(t), listener.Options{IdleGrace: 10 * time.Millisecond})
			srv := serveH2(t, l, http.HandlerFunc(ok), mode)
			h2 := srv.dialH2(t)
			l.untilCounts(t, listener.Counts{Idle: 1, HTTP2: 1, Accepted: 1})

			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			res := drainAsync(l, ctx)
			recvWithin(t, l.Draining(), "drain to start")
			h2.get(t, 1, "/")

			frames, err := h2.untilEnd(t)
			assert.ErrorIs(t, err, io.EOF, "HTTP/2 connection not closed cleanly; frames %v", frames)
			hd, _ := findFrame(frames, http2.FrameHeaders)
			assert.Equal(t, "200", hd.status, "frames %v", frames)
			var body string
			ended := false
			for _, f := range frames {
				if f.stream == 1 && (f.typ == http2.FrameData || f.typ == http2.FrameHeaders) {
					body += f.data
					ended = ended || f.endStream
				}
				assert.NotEqual(t, http2.FrameRSTStream, f.typ, "stream reset; frames %v", frames)
			}
			assert.Equal(t, "ok", body, "frames %v", frames)
			assert.True(t, ended, "response not ended; frames %v", frames)
			ga, _ := findFrame(frames, http2.FrameGoAway)
			require.Equal(t, http2.FrameGoAway, ga.typ, "no GOAWAY; frames %v", frames)
			assert.Equal(t, http2.ErrCodeNo, ga.code)
			assert.GreaterOrEqual(t, ga.lastStream, uint32(1), "GOAWAY refuses the request's stream")

			r := recvWithin(t, res, "Drain")
			require.NoError(t, r.err)
			assert.Equal(t, listener.DrainStats{Conns: 1, ClosedByPeerOrServer: 1, Duration: r.stats.Duration}, r.stats)
		})
	}
}

// TestCountsHTTP2: Counts.HTTP2 counts the HTTP/2 connections (h2 over
// TLS, h2c) and not the HTTP/1 ones, with real net/http clients; a
// request on a draining HTTP/2 connection gets its response, after which
// the client's connection ends and Drain completes.
func TestCountsHTTP2(t *testing.T) {
	for _, mode := range h2Modes {
		t.Run(string(mode), func(t *testing.T) {
			l := wrap(t, listen(t), listener.Options{IdleGrace: 10 * time.Millisecond})
			entered := make(chan struct{}, 1)
			release := make(chan struct{})
			mux := http.NewServeMux()
			mux.HandleFunc("/", ok)
			mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
				entered <- struct{}{}
				<-release
				io.WriteString(w, "released")
			})
			srv := serveH2(t, l, mux, mode)
			tr1, url := srv.transport(t, false)
			tr2, _ := srv.transport(t, true)
			get := func(tr *http.Transport, path string) (*http.Response, string, error) {
				req, err := http.NewRequest("GET", url+path, nil)
				if err != nil {
					return nil, "", err
				}
				resp, err := tr.RoundTrip(req)
				if err != nil {
					return nil, "", err
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				return resp, string(b), err
			}

			resp, body, err := get(tr1, "/")
			require.NoError(t, err)
			assert.Equal(t, "ok", body)
			assert.Equal(t, 1, resp.ProtoMajor)
			resp, body, err = get(tr2, "/")
			require.NoError(t, err)
			assert.Equal(t, "ok", body)
			assert.Equal(t, 2, resp.ProtoMajor)
			l.untilCounts(t, listener.Counts{Idle: 2, HTTP2: 1, Accepted: 2})

			// A stream open: the HTTP/2 connection is active.
			blocked := make(chan error, 1)
			go func() {
				_, body, err := get(tr2, "/block")
				if err == nil && body != "released" {
					err = fmt.Errorf("body %q", body)
				}
				blocked <- err
			}()
			recvWithin(t, entered, "handler")
			l.untilCounts(t, listener.Counts{Active: 1, Idle: 1, HTTP2: 1, Accepted: 2})
			close(release)
			require.NoError(t, recvWithin(t, blocked, "blocked request"))
			l.untilCounts(t, listener.Counts{Idle: 2, HTTP2: 1, Accepted: 2})

			// Draining: the HTTP/1 connection is closed idle; a request on
			// the HTTP/2 one is answered, then its GOAWAY ends it.
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			res := drainAsync(l, ctx)
			require.NoError(t, l.Await(ctx, func(c listener.Counts) bool { return c.Open()-c.HTTP2 == 0 }))
			assert.Equal(t, listener.Counts{Idle: 1, HTTP2: 1, Accepted: 2}, l.Counts())
			resp, body, err = get(tr2, "/")
			require.NoError(t, err)
			assert.Equal(t, "ok", body)
			assert.Equal(t, 2, resp.ProtoMajor)
			r := recvWithin(t, res, "Drain")
			require.NoError(t, r.err)
			assert.Equal(t, listener.DrainStats{Conns: 2, ClosedIdle: 1, ClosedByPeerOrServer: 1, Duration: r.stats.Duration}, r.stats)
			assert.Equal(t, listener.Counts{Accepted: 2}, l.Counts())
		})
	}
}

// TestDrainTLSHandshakeOnlyClosedIdle: a TLS connection that completed
// its handshake but sent no request (a browser's preconnect) is closed
// after the grace like any new connection: the handshake's bytes are not
// taken for the start of a request.
func TestDrainTLSHandshakeOnlyClosedIdle(t *testing.T) {
	l := wrap(t, listen(t), listener.Options{IdleGrace: 20 * time.Millisecond})
	srv := serveH2(t, l, http.HandlerFunc(ok), modeTLS)
	c := srv.dial(t, "http/1.1")
	l.untilCounts(t, listener.Counts{New: 1, Accepted: 1})

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	s, err := l.Drain(ctx)
	require.NoError(t, err)
	assert.Equal(t, listener.DrainStats{Conns: 1, ClosedIdle: 1, Duration: s.Duration}, s)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
	_, err = c.Read(make([]byte, 1))
	assert.Error(t, err, "TLS connection still open")
	assert.NotErrorIs(t, err, os.ErrDeadlineExceeded, "TLS connection still open")
}
