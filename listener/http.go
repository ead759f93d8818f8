package listener

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
)

// ConfigureServer sets srv up for listeners made by Wrap: it chains
// ConnState (so that the listener counts idle, new and hijacked
// connections and closes idle ones while draining) and ConnContext (so
// that a handler can find its connection) after any the caller set, and
// wraps srv.Handler (nil means http.DefaultServeMux) with [Handler], so
// that a request on a draining connection is answered with
// "Connection: close". srv may serve any number of such listeners, and
// plain ones too.
//
// Call it once, before Serve. It is not safe to call while srv is serving.
func ConfigureServer(srv *http.Server) {
	if prev := srv.ConnState; prev != nil {
		srv.ConnState = func(c net.Conn, s http.ConnState) {
			ConnState(c, s)
			prev(c, s)
		}
	} else {
		srv.ConnState = ConnState
	}
	if prev := srv.ConnContext; prev != nil {
		srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			return ConnContext(prev(ctx, c), c)
		}
	} else {
		srv.ConnContext = ConnContext
	}
	h := srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	srv.Handler = Handler(h)
}

// tracked finds the tracked conn under c: c itself, or the conn inside a
// *tls.Conn (or anything else with a NetConn method). It returns nil for a
// conn that no Listener accepted.
func tracked(c net.Conn) *conn {
	for range 4 { // bounded: wrappers do not nest deeper in practice
		switch x := c.(type) {
		case *conn:
			return x
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// ConnState is the http.Server.ConnState hook that tracks c's state. It is
// a no-op for connections no Listener accepted. It does not block (it
// takes the listener's lock briefly) and is safe for concurrent use, as
// net/http calls it from every connection's goroutine. ConfigureServer
// installs it; call it yourself from your own hook only if you do not use
// ConfigureServer.
//
// It also recognises HTTP/2 over TLS: net/http's HTTP/2 server calls the
// hook with the *tls.Conn once the handshake is done, and the first call
// that finds the handshake complete reads the negotiated protocol.
func ConnState(c net.Conn, s http.ConnState) {
	tc := tracked(c)
	if tc == nil {
		return
	}
	wrapped, h2 := c != net.Conn(tc), false
	if tlsc, ok := c.(*tls.Conn); ok && tc.flags.Load()&fALPNDone == 0 {
		// Once per conn, not per request. Outside the listener's lock:
		// ConnectionState takes the TLS conn's handshake lock.
		if cs := tlsc.ConnectionState(); cs.HandshakeComplete {
			tc.flags.Or(fALPNDone)
			h2 = cs.NegotiatedProtocol == http2ALPN
		}
	}
	switch s {
	case http.StateNew:
		tc.setState(stNew, false, wrapped, h2)
	case http.StateActive:
		tc.setState(stActive, false, wrapped, h2)
	case http.StateIdle:
		tc.setState(stIdle, false, wrapped, h2)
	case http.StateHijacked:
		tc.setState(stHijacked, false, wrapped, h2)
	case http.StateClosed:
		tc.setState(stActive, true, wrapped, h2)
	}
}

// http2ALPN is HTTP/2's protocol ID in the TLS handshake (RFC 9113).
const http2ALPN = "h2"

// ConnContext is the http.Server.ConnContext hook that lets [Handler] find
// the connection of a request. It returns a context with ctx's values and
// deadline, and allocates nothing; it is safe for concurrent use. For
// connections no Listener accepted it returns ctx. ConfigureServer
// installs it. For a connection adopted from another process
// ([Listener.Adopt]) it also reads the server's idle timeout, which then
// applies until the connection's first request here, instead of the
// header timeout net/http gives a new connection.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	tc := tracked(c)
	if tc == nil {
		return ctx
	}
	if v, _ := ctx.Value(connKey{}).(*conn); v == tc {
		return ctx // installed twice: do not make the context its own parent
	}
	if tc.flags.Load()&fAdoptWait != 0 {
		// An idle keep-alive conn from another process: its server's
		// idle timeout applies until its next request (SetReadDeadline).
		if srv, _ := ctx.Value(http.ServerContextKey).(*http.Server); srv != nil {
			tc.idleTimeout = srv.IdleTimeout
			if tc.idleTimeout == 0 {
				tc.idleTimeout = srv.ReadTimeout
			}
		}
	}
	tc.ctx.Context = ctx
	return &tc.ctx
}

// Handler wraps h so that a request arriving on a draining connection (one
// open when a drain started or accepted during one; see
// [Listener.Undrain]) is answered with "Connection: close". After the
// response net/http closes an HTTP/1 connection; on an HTTP/2 connection
// it sends a graceful GOAWAY, lets the open streams finish and then
// closes it. It needs [ConnContext] on the server (ConfigureServer
// installs both); requests on other connections pass through unchanged.
// It costs one atomic load per request and allocates nothing unless the
// connection is draining; the handler it returns is safe for concurrent
// use if h is.
func Handler(h http.Handler) http.Handler {
	return drainHandler{h}
}

type drainHandler struct{ h http.Handler }

func (d drainHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A drain that starts while h runs cannot reach this response: net/http
	// snapshots the header as soon as h writes. The conn then goes idle,
	// and its next request (or the idle grace) ends it.
	if c, _ := r.Context().Value(connKey{}).(*conn); c != nil && c.flags.Load()&fMarked != 0 {
		w.Header().Set("Connection", "close")
	}
	d.h.ServeHTTP(w, r)
}
