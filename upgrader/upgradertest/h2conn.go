package upgradertest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2conn is one client HTTP/2 connection (RFC 9113) written on x/net's
// Framer rather than net/http's client, which retries the streams a GOAWAY
// or REFUSED_STREAM leaves unprocessed and does not say whether a
// connection got a GOAWAY before it ended. It sends GETs on new streams and
// never sends one again; it answers SETTINGS and PING, gives back the
// flow-control window of the data it reads, and records what the server
// did to each stream and to the connection.
//
// One goroutine, readLoop, reads every frame; any goroutine may open a
// stream. wmu serializes the writes of frames (stream ids must go out in
// order, and the header encoder has state); mu guards the stream table and
// the state of the connection. A goroutine that holds both took wmu first.
type h2conn struct {
	nc      net.Conn
	fr      *http2.Framer
	scheme  string
	timeout time.Duration // bound on each write
	stats   *h2Stats
	done    chan struct{} // closed when readLoop has returned

	wmu    sync.Mutex
	henc   *hpack.Encoder
	hbuf   bytes.Buffer
	nextID uint32 // of the last stream opened

	mu         sync.Mutex
	streams    map[uint32]*h2stream // open streams by id
	goAway     bool                 // a GOAWAY came
	goAwayLast uint32               // the lowest last-stream-id of the GOAWAYs
	ended      error                // why the connection ended; nil while it is up
	writeErr   error                // the first write that failed
	closing    bool                 // the client closed the connection
}

// h2stream is one request. Its fields are set before done is closed and
// not written after.
type h2stream struct {
	id     uint32
	done   chan struct{}
	status int
	body   []byte
	class  Class // OK when the response was read to its end
	err    error
}

// dialH2 sets up an HTTP/2 connection to the server of cfg: over TLS with
// ALPN "h2" to cfg.TLSAddr, or in cleartext with prior knowledge to
// cfg.Addr. It counts the connection in stats.
func dialH2(cfg Config, useTLS bool, stats *h2Stats) (*h2conn, error) {
	d := &net.Dialer{Timeout: cfg.Timeout}
	var nc net.Conn
	scheme := "http"
	if useTLS {
		tc := cfg.TLS.Clone()
		tc.NextProtos = []string{http2.NextProtoTLS}
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
		defer cancel()
		c, err := (&tls.Dialer{NetDialer: d, Config: tc}).DialContext(ctx, cfg.Network, cfg.TLSAddr)
		if err != nil {
			return nil, err
		}
		if p := c.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != http2.NextProtoTLS {
			c.Close()
			return nil, fmt.Errorf("upgradertest: the server negotiated %q, not %q", p, http2.NextProtoTLS)
		}
		nc, scheme = c, "https"
	} else {
		c, err := d.Dial(cfg.Network, cfg.Addr)
		if err != nil {
			return nil, err
		}
		nc = c
	}
	c := &h2conn{
		nc:      nc,
		fr:      http2.NewFramer(nc, bufio.NewReader(nc)),
		scheme:  scheme,
		timeout: cfg.Timeout,
		stats:   stats,
		done:    make(chan struct{}),
		streams: map[uint32]*h2stream{},
		nextID:  ^uint32(0), // so that the first stream is 1
	}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	_ = nc.SetWriteDeadline(time.Now().Add(cfg.Timeout))
	_, err := io.WriteString(nc, http2.ClientPreface)
	if err == nil {
		err = c.fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	stats.opened.Add(1)
	go c.readLoop()
	return c, nil
}

// get sends the n-th request for op of cfg (see Config.request) on a new
// stream and waits up to cfg's timeout for the whole response, which it
// checks as an answer to op.
func (c *h2conn) get(cfg Config, op Op, n int) (Class, string, error) {
	st, class, err := c.open(cfg.request(op, n), cfg.Host)
	if class != OK {
		return class, "", err
	}
	timeout := cfg.timeout(op)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-st.done:
	case <-t.C:
		if c.finish(st, Timeout, fmt.Errorf("no complete response within %v", timeout)) {
			c.wmu.Lock()
			_ = c.write(func() error { return c.fr.WriteRSTStream(st.id, http2.ErrCodeCancel) })
			c.wmu.Unlock()
		}
		<-st.done
	}
	if st.class != OK {
		return st.class, "", st.err
	}
	return cfg.check(op, st.status, string(st.body))
}

// open sends the request r on a new stream: its headers, and its body if
// it has one. A connection that got a GOAWAY takes no new stream
// (Unprocessed), and one that ended without a GOAWAY fails the stream at
// once (NoGoAway).
func (c *h2conn) open(r Request, authority string) (*h2stream, Class, error) {
	if len(r.Body) > maxH2Body {
		return nil, Other, fmt.Errorf("upgradertest: a request body of %d bytes: at most %d on HTTP/2", len(r.Body), maxH2Body)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	switch {
	case c.goAway:
		last := c.goAwayLast
		c.mu.Unlock()
		return nil, Unprocessed, fmt.Errorf("not sent: the connection got a GOAWAY (last stream %d)", last)
	case c.ended != nil:
		err := c.ended
		c.mu.Unlock()
		return nil, NoGoAway, fmt.Errorf("reused a connection that ended without a GOAWAY: %w", err)
	}
	c.nextID += 2
	st := &h2stream{id: c.nextID, done: make(chan struct{})}
	c.streams[st.id] = st
	c.mu.Unlock()

	c.hbuf.Reset()
	fields := []hpack.HeaderField{
		{Name: ":method", Value: r.methodOrGet()},
		{Name: ":scheme", Value: c.scheme},
		{Name: ":authority", Value: authority},
		{Name: ":path", Value: r.Path},
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			fields = append(fields, hpack.HeaderField{Name: strings.ToLower(k), Value: v})
		}
	}
	if len(r.Body) > 0 {
		fields = append(fields, hpack.HeaderField{Name: "content-length", Value: strconv.Itoa(len(r.Body))})
	}
	for _, f := range fields {
		_ = c.henc.WriteField(f) // writes to a bytes.Buffer: no error
	}
	// If a write fails, write closes the connection: readLoop ends the
	// stream with the connection.
	err := c.write(func() error {
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: st.id, BlockFragment: c.hbuf.Bytes(), EndStream: len(r.Body) == 0, EndHeaders: true})
	})
	// The body fits in the stream's initial window (maxH2Body); frames of
	// at most the minimum SETTINGS_MAX_FRAME_SIZE, 16384.
	for b := r.Body; err == nil && len(b) > 0; {
		chunk := b[:min(len(b), 16384)]
		b = b[len(chunk):]
		err = c.write(func() error { return c.fr.WriteData(st.id, len(b) == 0, chunk) })
	}
	return st, OK, nil
}

// write writes frames with f under a deadline; c.wmu must be held. A
// failed write closes the connection, so that readLoop ends it.
func (c *h2conn) write(f func() error) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
	err := f()
	if err != nil {
		c.mu.Lock()
		if c.writeErr == nil {
			c.writeErr = err
		}
		c.mu.Unlock()
		c.nc.Close()
	}
	return err
}

// finish ends st with class and err unless it has ended already, and
// reports whether it did.
func (c *h2conn) finish(st *h2stream, class Class, err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.finishLocked(st, class, err)
}

func (c *h2conn) finishLocked(st *h2stream, class Class, err error) bool {
	if c.streams[st.id] != st {
		return false
	}
	delete(c.streams, st.id)
	st.class, st.err = class, err
	close(st.done)
	return true
}

// state reports whether c got a GOAWAY and whether it has ended.
func (c *h2conn) state() (goAway, ended bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.goAway, c.ended != nil
}

// close closes the connection from the client's side and waits for
// readLoop to return. No stream may be open.
func (c *h2conn) close() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.nc.Close()
	<-c.done
}

// readLoop reads and handles every frame until the connection ends.
func (c *h2conn) readLoop() {
	defer close(c.done)
	var err error
	for err == nil {
		var f http2.Frame
		f, err = c.fr.ReadFrame()
		var se http2.StreamError
		switch {
		case err == nil:
			err = c.handle(f)
		case errors.As(err, &se):
			// A malformed response on one stream; the connection goes on.
			c.mu.Lock()
			if st := c.streams[se.StreamID]; st != nil {
				c.finishLocked(st, Other, err)
			}
			c.mu.Unlock()
			err = nil
		}
	}
	c.end(err)
}

// handle handles one frame from the server.
func (c *h2conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		return c.handleSettings(f)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		c.wmu.Lock()
		defer c.wmu.Unlock()
		return c.write(func() error { return c.fr.WritePing(true, f.Data) })
	case *http2.GoAwayFrame:
		c.handleGoAway(f)
	case *http2.RSTStreamFrame:
		class := Reset
		if f.ErrCode == http2.ErrCodeRefusedStream {
			class = Unprocessed
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if st := c.streams[f.StreamID]; st != nil {
			c.finishLocked(st, class, http2.StreamError{StreamID: f.StreamID, Code: f.ErrCode})
		}
	case *http2.MetaHeadersFrame:
		c.handleHeaders(f)
	case *http2.DataFrame:
		return c.handleData(f)
	case *http2.PushPromiseFrame:
		return errors.New("PUSH_PROMISE although SETTINGS_ENABLE_PUSH is 0")
	}
	return nil
}

// handleSettings applies the server's header table size and acknowledges
// its SETTINGS.
func (c *h2conn) handleSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if v, ok := f.Value(http2.SettingHeaderTableSize); ok {
		c.henc.SetMaxDynamicTableSize(v)
	}
	return c.write(c.fr.WriteSettingsAck)
}

// handleGoAway notes a GOAWAY and ends the streams above its last stream
// id as unprocessed. Of several GOAWAYs, the lowest last stream id holds.
func (c *h2conn) handleGoAway(f *http2.GoAwayFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.goAway || f.LastStreamID < c.goAwayLast {
		c.goAwayLast = f.LastStreamID
	}
	c.goAway = true
	for id, st := range c.streams {
		if id > c.goAwayLast {
			c.finishLocked(st, Unprocessed, fmt.Errorf("GOAWAY %v with last stream %d: stream %d not processed", f.ErrCode, f.LastStreamID, id))
		}
	}
}

// handleHeaders takes the status of a response, skipping informational
// ones, and ends the stream if the frame does (a response without a body,
// or trailers).
func (c *h2conn) handleHeaders(f *http2.MetaHeadersFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.streams[f.StreamID]
	if st == nil {
		return
	}
	if st.status == 0 { // else trailers
		status, err := strconv.Atoi(f.PseudoValue("status"))
		switch {
		case err != nil:
			c.finishLocked(st, Other, fmt.Errorf("bad :status %q", f.PseudoValue("status")))
			return
		case status < 200:
			if f.StreamEnded() {
				c.finishLocked(st, Other, fmt.Errorf("stream ended after status %d", status))
			}
			return // informational: the final response follows
		}
		st.status = status
	}
	if f.StreamEnded() {
		c.finishLocked(st, OK, nil)
	}
}

// handleData adds the data to its stream's body, ends the stream if the
// frame does, and gives back the flow-control window the frame took: the
// connection's, and the stream's while it is open.
func (c *h2conn) handleData(f *http2.DataFrame) error {
	c.mu.Lock()
	st := c.streams[f.StreamID]
	if st != nil {
		st.body = append(st.body, f.Data()...)
		if f.StreamEnded() {
			c.finishLocked(st, OK, nil)
		}
	}
	c.mu.Unlock()
	n := f.Length // padding included: it counts in the window too
	if n == 0 {
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.write(func() error {
		if err := c.fr.WriteWindowUpdate(0, n); err != nil || st == nil || f.StreamEnded() {
			return err
		}
		return c.fr.WriteWindowUpdate(f.StreamID, n)
	})
}

// end ends every open stream and counts the connection by how it ended.
func (c *h2conn) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writeErr != nil {
		err = c.writeErr
	}
	c.ended = err
	for _, st := range c.streams {
		switch {
		case c.goAway: // the server promised to process this stream
			c.finishLocked(st, classify(err, false), fmt.Errorf("connection ended after a GOAWAY: %w", err))
		case c.closing:
			c.finishLocked(st, Other, errors.New("connection closed by the client"))
		default:
			c.finishLocked(st, NoGoAway, fmt.Errorf("connection ended without a GOAWAY: %w", err))
		}
	}
	switch {
	case c.goAway:
		c.stats.goAway.Add(1)
	case !c.closing:
		c.stats.noGoAway.Add(1)
	}
}
