// Package listener tracks the connections of a net.Listener so that a
// server can stop accepting without closing its socket and then end every
// connection without losing a request. [Wrap] turns a listener into a
// [Listener] that counts its connections by state (new, active, idle,
// hijacked), can [Listener.Pause] and [Listener.Resume] taking connections
// from the kernel (during an upgrade the socket is shared with the next
// process, which takes them instead), and can [Listener.Drain] them.
//
// # Drain order, and why
//
// Draining with http.Server.Shutdown alone loses requests: Shutdown closes
// idle keep-alive connections at once, so a client that is sending on one at
// that moment gets EOF or a reset, and net/http drops, with no response, a
// request it reads after shutdown has begun. Drain does it in this order
// instead, which lost no request in our measurements:
//
//  1. stop accepting (pause, do not close: the socket may be shared);
//  2. answer the next request on each keep-alive connection with
//     "Connection: close", so net/http closes it after the response and
//     the client knows not to reuse it;
//  3. close an HTTP/1 connection ourselves only after it has stayed idle
//     for a short grace ([Options.IdleGrace], 300ms by default), and never
//     once the next request has started to arrive, however slowly the rest
//     of it comes; never close an HTTP/2 connection ourselves (see below);
//  4. wait for active requests, streams and hijacked connections, and
//     force-close what is left when the context is done;
//  5. then call http.Server.Shutdown, which finds no connection left, or
//     only HTTP/2 ones, and ends those with a GOAWAY.
//
// The mark that asks for "Connection: close" is per connection: Drain marks
// the connections open when it starts and those accepted while it is in
// progress.
//
// On a final stop, when no other process shares the socket, call
// [Listener.Finish] before Drain: it accepts the connections the kernel has
// already queued and then closes the listener, so they are served instead
// of being reset when the socket closes.
//
// # Use with net/http
//
//	ln, _ := net.Listen("tcp", addr)
//	l := listener.Wrap(ln, listener.Options{})
//	srv := &http.Server{Handler: mux}
//	listener.ConfigureServer(srv) // ConnState, ConnContext, Handler
//	go srv.Serve(l)
//	...
//	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
//	defer cancel()
//	stats, err := l.Drain(ctx) // err wraps ctx.Err() if it force-closed
//	srv.Shutdown(ctx)          // no connection left: returns at once
//
// That is for HTTP/1 only; a server that may speak HTTP/2 (any server with
// TLS, by default) follows the order in the HTTP/2 section below.
//
// ConfigureServer chains the server's ConnState and ConnContext hooks and
// wraps its handler; [ConnState], [ConnContext] and [Handler] are the same
// pieces for servers built differently. Wrap the TCP listener and put TLS on
// top of the Listener, not the other way round.
//
// # HTTP/2
//
// An HTTP/2 connection must not be closed without a GOAWAY frame: its
// client may be sending a request at that moment, and would lose it.
// net/http's HTTP/2 server sends a graceful GOAWAY (then lets the open
// streams finish and closes the connection) in two cases: a response that
// carries "Connection: close", which [Handler] adds on a draining
// connection as for HTTP/1; and http.Server.Shutdown, for every HTTP/2
// connection at once. So the idle closer never closes an HTTP/2
// connection, and Drain waits for it (or force-closes it when ctx is
// done, as any connection). The Listener recognises HTTP/2 connections by
// the protocol negotiated over TLS ("h2", read once per connection in
// [ConnState]) and, in clear text (h2c with prior knowledge, Go 1.24
// http.Server.Protocols with SetUnencryptedHTTP2), by the client preface
// at the start of the connection; [Counts].HTTP2 counts them.
//
// A server that may speak HTTP/2 therefore drains in this order: Drain in
// a goroutine; [Listener.Await] until only HTTP/2 connections are left;
// Shutdown, which sends each of them a GOAWAY; then Drain returns. The
// order suits HTTP/1-only servers too (Await returns when Drain is done):
//
//	drained := make(chan error, 1)
//	go func() {
//		_, err := l.Drain(ctx)
//		drained <- err
//	}()
//	err := l.Await(ctx, func(c listener.Counts) bool { return c.Open()-c.HTTP2 == 0 })
//	...
//	err = srv.Shutdown(ctx) // a GOAWAY to each HTTP/2 connection
//	err = <-drained
//
// With several listeners under one server, start Drain on each and Await
// on each before the one Shutdown, which acts on all the server's
// connections.
//
// # Calling a drain off
//
// During an upgrade the old process drains after the new one has taken
// over; if the new one dies before the old one has finished, the old one
// serves on. [Listener.Undrain] calls the drain off: the Drain calls
// return an error wrapping [ErrUndrained], and the listener accepts again.
// The connections the drain marked still wind down (their next response
// says "Connection: close", the idle closer still closes them), so no
// request on them is lost, but nothing waits for them; connections
// accepted from then on are served as usual, and a later Drain covers
// them all.
//
// # Handing connections over
//
// During an upgrade the process that takes over the socket can also take
// the established connections: [Listener.HandOver] makes the drain pass the
// socket of each connection that waits for its next request to that
// process (the upgrader package sends it over a unix socket with
// SCM_RIGHTS), which calls [Listener.Adopt] and serves it as if it had
// just accepted it. The client sees nothing: no FIN, no "Connection:
// close", no reconnect. A connection moves only when nothing of its next
// request has been read: net/http's goroutine waits in Read for a whole
// buffer (so net/http holds no buffered byte), the idle closer is not at
// it, and a last look at the socket finds no byte waiting; a request that
// is arriving is answered here, once, and bytes that arrive after the look
// stay in the kernel for the other process. A Read already waiting when
// the hand-over starts is woken by a read deadline in the past, which
// returns without consuming anything.
//
// What cannot move drains as before: TLS connections (their session keys
// and sequence numbers live in crypto/tls in this process; moving them
// would take kernel TLS, or an export of the session's state that
// crypto/tls does not offer), HTTP/2 connections (stream and HPACK state),
// hijacked connections, and connections in the middle of a request. While
// the hand-over lasts, a connection that may still move is not told
// "Connection: close": it moves when its response is done. If the other
// process takes nothing (the send fails), the drain goes on as without a
// hand-over.
//
// An adopted connection waits for its first request here under the
// server's idle timeout (IdleTimeout, or ReadTimeout), read from the
// server by [ConnContext], not under the header timeout net/http gives a
// new connection, which applies once the request starts.
//
// # Raw TCP servers
//
// Without net/http no ConnState arrives: a connection counts as active from
// Accept until its Close. Drain waits for such connections and force-closes
// them at the deadline; the server watches [Listener.Draining] to finish its
// work and close them. A raw server can let its connections be handed over:
// it calls [Idle] before each Read that waits for the next message with
// nothing of it buffered; such a Read may then return io.EOF once the
// connection has moved, and the server closes it (Close returns nil).
//
// # Costs
//
// Accept allocates one small struct per connection, which also holds the
// connection's context. A request costs two short critical sections on the
// listener's mutex (its ConnState transitions), one atomic load in
// [Handler], in Read an atomic load per call plus one atomic update on the
// first bytes after the connection went idle and two around the Read that
// waits for the next request, an atomic store per SetReadDeadline and an
// atomic load per Write; nothing is allocated per request. A hand-over
// costs, per connection moved, a peek and a dup of its descriptor, and a
// message per 253 connections. Over TLS, ConnState also reads the negotiated protocol
// once per connection. A waiting [Listener.Await] costs each change of
// the counts a non-blocking channel send. Each idle HTTP/1 connection
// marked by a drain has a timer (time.AfterFunc, stopped on close); no
// goroutine is started per connection.
package listener
