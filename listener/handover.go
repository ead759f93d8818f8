package listener

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/handoff-go/handoff/internal/fdpass"
	"github.com/handoff-go/handoff/internal/peek"
)

// The hand-over: a draining listener passes the socket of each idle
// connection to the process that takes its listening socket over, which
// serves the connection from then on as if it had just accepted it; the
// client sees nothing (no FIN: the socket stays open in the other process).
//
// Which connections move: an HTTP/1 connection, not through TLS and not
// HTTP/2 or hijacked, that waits for its next request (StateIdle, or
// StateNew with nothing received) with no byte of it read, its net/http
// goroutine blocked in Read asking for a whole bufio buffer (idleReadLen),
// which means that net/http holds no buffered byte of it; or a raw
// connection whose server declared it Idle and that waits in Read.
//
// How one moves, losslessly. The conn is marked fHandOver. A Read that
// waits for the next request and sees the mark does not call the inner
// Read: it peeks at the socket (a byte pending: the request is here, this
// process answers it), and otherwise dups the socket's descriptor and
// queues it for sending; once sent, it returns io.EOF, net/http closes the
// conn, and the close of this process's descriptor sends nothing, since
// the other process holds the socket. Bytes that arrive after the peek
// stay in the kernel for the other process. A Read already blocked in the
// inner Read when the hand-over starts (fParked) is woken with a read
// deadline in the past: the inner Read returns a timeout without consuming
// a byte, and Read, seeing fWoken, puts the server's deadline back and
// takes the path above. A send that fails leaves the conn here: Read goes
// on reading, and the drain ends it as it would have without a hand-over.
//
// The readers that queue sockets send them in batches (up to
// fdpass.MaxFDs per message): the first reader to find nobody sending
// sends the batch, and every batch queued meanwhile, then returns.

// ErrHandedOver is wrapped by the error of a Write on a connection that was
// handed over to another process (see [Listener.HandOver]).
var ErrHandedOver = errors.New("listener: connection handed over to another process")

// SendFunc passes sockets to the process that takes over a listener's
// socket: fds are descriptors of connections of that listener, at most
// fdpass's 253 at a time, valid until it returns (the listener closes
// them). It returns nil once they are sent: from then on the other process
// owns the connections, whatever happens to this one. On an error none was
// sent. It may be called from several goroutines, never concurrently for
// one listener.
type SendFunc func(fds []int) error

// maxTries is how many times a hand-over of one conn is given up because
// its client was sending the next request already, before the conn is
// left to the drain (its next response says "Connection: close"): a client
// that pipelines would otherwise never be idle and never end.
const maxTries = 3

// handOver is a listener's hand-over in progress.
type handOver struct {
	l    *Listener
	send SendFunc

	mu      sync.Mutex
	queue   []*moveBatch // not yet sent; the last one may still fill
	sending bool         // a reader sends the queue
	err     error        // the first failure: nothing is sent after it
}

// moveBatch is one message of sockets.
type moveBatch struct {
	fds  []int
	done chan struct{} // closed once sent or failed
	err  error
}

// move sends fd with the next batch and returns once the batch is sent
// (nil) or failed. It closes fd.
func (h *handOver) move(fd int) error {
	h.mu.Lock()
	if h.err != nil {
		err := h.err
		h.mu.Unlock()
		_ = fdpass.Close(fd)
		return err
	}
	var b *moveBatch
	if n := len(h.queue); n > 0 && len(h.queue[n-1].fds) < fdpass.MaxFDs {
		b = h.queue[n-1]
	} else {
		b = &moveBatch{done: make(chan struct{})}
		h.queue = append(h.queue, b)
	}
	b.fds = append(b.fds, fd)
	if h.sending {
		h.mu.Unlock()
		<-b.done
		return b.err
	}
	// Nobody sends: this reader sends every batch until none is queued.
	h.sending = true
	var failed error
	for len(h.queue) > 0 {
		next := h.queue[0]
		h.queue[0] = nil
		h.queue = h.queue[1:]
		err := h.err
		h.mu.Unlock()
		if err == nil {
			err = h.send(next.fds)
		}
		for _, fd := range next.fds {
			_ = fdpass.Close(fd)
		}
		next.err = err
		close(next.done)
		h.mu.Lock()
		if err != nil && h.err == nil {
			h.err, failed = err, err
		}
	}
	h.sending = false
	h.mu.Unlock()
	if failed != nil {
		h.l.handOverFailed(h, failed)
	}
	return b.err
}

// HandOver makes the listener's drain hand idle connections over to the
// process that takes over its listening socket, through send, instead of
// ending them. It takes effect when the next Drain starts (or at once, if
// one is in progress), and lasts until Undrain or the first failure of
// send.
//
// While it lasts, every connection that can move is handed over as soon
// as it waits for its next request: at once if it waits already, after
// its response if it is serving a request (its response does not say
// "Connection: close", so that its client keeps it). The connections that
// can move are HTTP/1 connections served by net/http through
// ConfigureServer, not through TLS (its session state lives in this
// process: moving it would need kernel TLS or an export of the session's
// keys, neither of which crypto/tls offers), not HTTP/2 (its streams'
// state lives here too) and not hijacked; and raw connections their server
// declared [Idle]. The others drain as without a hand-over. A connection
// whose client is sending its next request when it would move stays and
// answers it; after a few such misses it drains here too. A connection is
// never served by both processes, and a request is answered once.
//
// When send fails, the hand-over ends: nothing more is sent, connections
// not yet moved drain here (their next response says "Connection: close";
// idle ones are closed after IdleGrace), and a warning is logged.
// DrainStats.HandedOver counts the connections moved.
//
// A nil send turns the hand-over off for the next drain. HandOver does
// not block and is safe for concurrent use.
func (l *Listener) HandOver(send SendFunc) {
	l.mu.Lock()
	l.hoSend = send
	var wake []*conn
	if l.drain != nil && l.ho == nil && send != nil {
		wake = l.startHandOverLocked()
	}
	l.mu.Unlock()
	wakeAll(wake)
}

// startHandOverLocked starts handing connections over through l.hoSend:
// every conn that can move is to be handed over. It returns those to
// wake once the lock is released.
func (l *Listener) startHandOverLocked() (wake []*conn) {
	l.ho = &handOver{l: l, send: l.hoSend}
	for c := l.head; c != nil; c = c.next {
		if c.closed || c.h2 || c.wrapped || c.state == stHijacked || !canMove(c.Conn) {
			continue
		}
		c.flags.Or(fHandOver)
		wake = append(wake, c)
	}
	l.log.Info("listener: handing connections over", "addr", l.inner.Addr().String(), "conns", len(wake))
	return wake
}

// canMove reports whether a conn's socket can be duplicated for a
// hand-over.
func canMove(nc net.Conn) bool {
	_, ok := nc.(syscall.Conn)
	return ok
}

func wakeAll(cs []*conn) {
	for _, c := range cs {
		c.wake()
	}
}

// handOverFailed ends the hand-over h after send failed: the conns that
// were to move drain here.
func (l *Listener) handOverFailed(h *handOver, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ho != h {
		return // ended already (Undrain)
	}
	l.ho = nil
	n := 0
	for c := l.head; c != nil; c = c.next {
		if c.flags.Load()&fHandOver != 0 {
			n++
			l.keepLocked(c)
			if !c.closed && !c.h2 && (c.state == stIdle || c.state == stNew) && l.drain != nil {
				l.armIdleLocked(c, time.Now())
			}
		}
	}
	l.log.Warn("listener: hand-over failed; draining the rest here", "addr", l.inner.Addr().String(), "conns", n, "error", err)
}

// stopHandOverLocked ends the hand-over without a failure (Undrain): the
// conns that were to move are served as any other.
func (l *Listener) stopHandOverLocked() {
	l.ho, l.hoSend = nil, nil
	for c := l.head; c != nil; c = c.next {
		c.flags.And(^fHandOver)
	}
}

// keepLocked: c cannot move (TLS, HTTP/2, hijacked) or no longer will;
// if it was to, it drains here instead, marked as any other conn.
func (l *Listener) keepLocked(c *conn) {
	if c.flags.Load()&fHandOver == 0 {
		return
	}
	c.flags.And(^fHandOver)
	if l.drain != nil {
		c.flags.Or(fMarked)
	}
}

// wake makes a Read that waits in the inner Read for the next request
// return, without consuming anything, so that it hands c over.
func (c *conn) wake() {
	c.wakeMu.Lock()
	defer c.wakeMu.Unlock()
	for {
		f := c.flags.Load()
		if f&fParked == 0 || f&fWoken != 0 || f&fHandOver == 0 {
			return
		}
		if c.flags.CompareAndSwap(f, f|fWoken) {
			_ = c.Conn.SetReadDeadline(aLongTimeAgo)
			return
		}
	}
}

// aLongTimeAgo is a read deadline that has passed (net/http uses the
// same to wake a blocked Read).
var aLongTimeAgo = time.Unix(1, 0)

// unwake puts back the read deadline the server had set, after a wake.
func (c *conn) unwake() {
	c.wakeMu.Lock()
	defer c.wakeMu.Unlock()
	c.flags.And(^fWoken)
	var t time.Time
	if ns := c.rdl.Load(); ns != 0 {
		t = time.Unix(0, ns)
	}
	_ = c.Conn.SetReadDeadline(t)
}

// handOver moves c to the other process, from Read, which has read
// nothing of the next request. It reports whether c moved; if not, Read
// reads as usual.
func (c *conn) handOver() bool {
	l := c.l
	l.mu.Lock()
	h := l.ho
	f := c.flags.Load()
	if h == nil || c.closed || f&fHandOver == 0 || !c.movableLocked(f) {
		l.mu.Unlock()
		return false
	}
	c.flags.Or(fMoving)
	l.mu.Unlock()

	if f := l.test.beforePeek; f != nil {
		f()
	}
	pending := peek.Pending(c.Conn)
	var err error
	if !pending {
		var fd int
		if fd, err = fdpass.Dup(c.Conn.(syscall.Conn)); err == nil {
			err = h.move(fd)
		}
	}

	l.mu.Lock()
	c.flags.And(^fMoving)
	moved := !pending && err == nil
	switch {
	case moved:
		c.flags.Or(fGone)
		if !c.closed {
			l.closeLocked(c, closedHandedOver)
		} else {
			c.moved = true // force-closed meanwhile: the other process has it all the same
		}
	case pending:
		if c.tries++; c.tries >= maxTries {
			l.keepLocked(c)
		}
	default:
		// Dup failed (the conn was closed meanwhile), or the send did:
		// handOverFailed ends the hand-over for every conn.
		l.keepLocked(c)
	}
	l.mu.Unlock()
	if moved {
		// This process's descriptor; the socket lives on in the other.
		_ = c.Conn.Close()
	}
	return moved
}

// movableLocked reports whether c, with flags f, waits for its next
// request or message in a way that lets it move: an HTTP/1 conn idle or
// new (fIdleRead), or a raw conn declared Idle.
func (c *conn) movableLocked(f uint32) bool {
	if c.httpSeen {
		return f&fIdleRead != 0 && !c.h2 && !c.wrapped
	}
	return f&fRawIdle != 0
}

// Idle declares that the server of c, a connection that a Listener
// accepted and that net/http does not serve, holds no byte of it that it
// has not processed, and that its next Read on c waits for the next
// message: during a hand-over (see [Listener.HandOver]) that Read may then
// return io.EOF instead, once the connection has moved to the process
// that took over the listener, which serves it from then on. The server
// then closes c (Close returns nil), and must not write to it (a Write
// fails with an error wrapping [ErrHandedOver]). The declaration holds
// until the Read returns bytes or until [Busy]. It is a no-op on other
// connections (c must be the one Accept returned, not a TLS conn around
// it: TLS state cannot move). It does not block and allocates nothing.
func Idle(c net.Conn) {
	if tc, ok := c.(*conn); ok {
		tc.flags.Or(fRawIdle)
	}
}

// Busy withdraws an [Idle] declaration before the next Read returns: the
// server holds unprocessed bytes of c after all.
func Busy(c net.Conn) {
	if tc, ok := c.(*conn); ok {
		tc.flags.And(^fRawIdle)
	}
}

// Adopt hands Accept a connection that another process handed over (see
// [Listener.HandOver]): it comes out of Accept before any connection the
// kernel has queued, even while the listener is paused, and is tracked as
// a new connection; net/http serves it as if it had just accepted it. c is
// usually made with net.FileConn from a received descriptor. Adopt fails
// (and c is not taken: the caller closes it) once the listener is closed
// or finishing. It does not block and is safe for concurrent use.
func (l *Listener) Adopt(c net.Conn) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.isClosed() || l.finishing {
		a := l.inner.Addr()
		return fmt.Errorf("listener: adopt on %s: %w", a, net.ErrClosed)
	}
	l.adopted = append(l.adopted, c)
	if l.dl != nil && l.inAccept > 0 {
		// Interrupt the pending inner Accept; it takes c first.
		l.kicked = true
		_ = l.dl.SetDeadline(time.Now())
	}
	select {
	case l.adoptCh <- struct{}{}:
	default:
	}
	l.changedLocked()
	return nil
}
