package listener

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoff-go/handoff/internal/peek"
)

// connState is a tracked conn's state as far as counting goes.
type connState uint8

const (
	stActive   connState = iota // raw TCP, or http.StateActive
	stNew                       // http.StateNew
	stIdle                      // http.StateIdle
	stHijacked                  // http.StateHijacked
	numStates
)

// closeReason says who closed a conn, for DrainStats.
type closeReason uint8

const (
	closedByPeerOrServer closeReason = iota
	closedIdle
	closedForced
	closedHandedOver // its socket went to another process
)

// conn is a tracked connection, the net.Conn that Listener.Accept returns.
// Everything below "guarded by l.mu" is only touched with the listener's
// mutex held; one mutex per listener keeps counts consistent and is cheap
// next to a request (two uncontended lock/unlock pairs per request).
type conn struct {
	net.Conn
	l *Listener

	// ctx is the context ConnContext returns for this conn: it lives
	// inside the conn so that ConnContext allocates nothing.
	ctx connCtx

	// flags holds the bits below. Read and Handler read it without l.mu;
	// the bits other than Read's are only changed with l.mu held.
	flags atomic.Uint32

	// rdl is the read deadline the server set last (UnixNano, 0 for
	// none): a hand-over that wakes a parked Read with a deadline in the
	// past puts it back.
	rdl atomic.Int64
	// wakeMu orders a wake (a read deadline in the past, set while Read
	// is parked) before Read's restoring of rdl.
	wakeMu sync.Mutex
	// For an adopted conn waiting for its first request (fAdoptWait):
	// idleTimeout is its server's idle timeout (from ConnContext), which
	// applies while it waits, as it did in the other process; hdrWait is
	// the header timeout net/http set, which applies once bytes arrive.
	idleTimeout time.Duration
	hdrWait     atomic.Int64

	// guarded by l.mu
	prev, next *conn
	state      connState
	closed     bool // Close claimed (counts updated, fd closed or closing)
	released   bool // no longer tracked: removed from the list
	httpSeen   bool // an http.ConnState arrived: net/http owns the conn until StateClosed
	wrapped    bool // ConnState sees the conn through a wrapper (TLS)
	h2         bool // speaks HTTP/2: counted in l.http2, never closed idle
	reason     closeReason
	moved      bool  // handed over to another process
	tries      uint8 // hand-overs given up because a request was arriving
	idleSince  time.Time
	timer      *time.Timer // idle-grace timer, only on marked conns
}

// Bits of conn.flags.
const (
	// fMarked: the conn is winding down. It was open when a drain
	// started, or accepted during one. Handler answers its next request
	// with "Connection: close" and the idle closer closes it after the
	// grace. Undrain leaves the mark: nothing unmarks a conn.
	fMarked uint32 = 1 << iota
	// fArrived: bytes arrived since the conn last became idle (StateIdle,
	// or StateNew for a fresh one). Set by Read, cleared by ConnState.
	// The idle closer leaves such a conn alone: its next request is
	// partly read.
	fArrived
	// fRecent: bytes arrived since the idle closer last looked (or since
	// the grace last started). Set by Read, cleared by the idle closer.
	fRecent
	// fPrefaceDone: Read has seen whether the conn starts with the
	// HTTP/2 client preface; Read stops looking.
	fPrefaceDone
	// fALPNDone: ConnState has seen the TLS handshake complete and read
	// the negotiated protocol; it stops looking.
	fALPNDone

	// The bits of the hand-over (handover.go).

	// fIdleRead: an HTTP/1 conn, not through TLS, in StateIdle or
	// StateNew: its next Read asking for a full buffer (idleReadLen)
	// with fArrived clear waits for the next request, with nothing
	// buffered in net/http. Set and cleared by ConnState.
	fIdleRead
	// fRawIdle: a raw TCP server declared that it holds nothing of the
	// conn and waits for its next message (Idle); cleared by Busy and by
	// the first bytes Read returns.
	fRawIdle
	// fParked: Read waits in the inner Read for the next request (or
	// message): a hand-over may wake it.
	fParked
	// fWoken: a hand-over set a read deadline in the past on the parked
	// Read; Read puts the server's back before it does anything else.
	fWoken
	// fHandOver: the conn is to be handed over when it next waits for a
	// request, and gets no "Connection: close" meanwhile.
	fHandOver
	// fMoving: Read is handing the conn over; the idle closer leaves it.
	fMoving
	// fGone: the conn was handed over: Read returns io.EOF, Write fails.
	fGone
	// fAdoptWait: the conn was adopted from another process and waits
	// for its first request here: it is an idle keep-alive connection,
	// not a new one, so the server's idle timeout applies, not its
	// header timeout (see SetReadDeadline).
	fAdoptWait

	// Bits 16 to 23 count the preface bytes matched so far.
	prefaceShift = 16
	prefaceMask  = 0xff << prefaceShift

	// readBits are the bits Read sets: when all are set, Read costs one
	// atomic load.
	readBits = fArrived | fRecent | fPrefaceDone
)

// h2Preface starts every HTTP/2 connection (RFC 9113, section 3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// connCtx is the conn's context: parent's values plus the conn itself.
type connCtx struct {
	context.Context
	c *conn
}

type connKey struct{}

func (x *connCtx) Value(key any) any {
	if key == (connKey{}) {
		return x.c
	}
	return x.Context.Value(key)
}

// trackLocked wraps a freshly accepted conn and adds it to the list. A
// conn accepted while a drain is in progress is marked from the start, or,
// while the drain hands connections over, is to be handed over.
func (l *Listener) trackLocked(nc net.Conn) *conn {
	c := &conn{Conn: nc, l: l, state: stActive}
	c.ctx.c = c
	if l.drain != nil {
		if l.ho != nil && canMove(nc) {
			c.flags.Store(fHandOver)
		} else {
			c.flags.Store(fMarked)
		}
	}
	c.next = l.head
	if l.head != nil {
		l.head.prev = c
	}
	l.head = c
	l.live++
	l.byState[stActive]++
	l.accepted++
	l.changedLocked()
	return c
}

// Read reads from the connection. It notes that bytes arrived, so that
// the idle closer leaves a conn whose next request is being read alone,
// and looks for the HTTP/2 client preface at the start of the conn. Once
// both are noted, a Read costs one atomic load; a Read that waits for the
// next request (see idleRead) costs two more atomic operations, and is
// where a hand-over takes the conn (handover.go).
func (c *conn) Read(b []byte) (int, error) {
	for {
		f := c.flags.Load()
		if f&(fIdleRead|fRawIdle|fGone) == 0 || !c.idleRead(f, len(b)) {
			n, err := c.Conn.Read(b)
			if n > 0 && c.flags.Load()&readBits != readBits {
				c.noteRead(b[:n])
			}
			return n, err
		}
		if f&fGone != 0 {
			return 0, io.EOF
		}
		if c.flags.Or(fParked)&fHandOver != 0 {
			// To hand over: nothing of the next request is read.
			c.flags.And(^fParked)
			if c.handOver() {
				return 0, io.EOF
			}
			return c.readNoted(b)
		}
		n, err := c.Conn.Read(b)
		if c.flags.And(^fParked)&fWoken != 0 {
			c.unwake()
			if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
				continue // woken for a hand-over: fHandOver is set
			}
		}
		if n > 0 {
			c.noteRead(b[:n])
		}
		return n, err
	}
}

// readNoted is a Read without the idle path.
func (c *conn) readNoted(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.noteRead(b[:n])
	}
	return n, err
}

// idleReadLen is the size of net/http's bufio.Reader (bufio's default,
// which net/http uses for every HTTP/1 conn): a Read that asks for that
// many bytes has a reader with no byte buffered.
const idleReadLen = 4096

// idleRead reports whether a Read of n bytes, with flags f, waits for the
// next request or message with nothing of it read: an HTTP/1 conn idle or
// new, with no byte arrived since, asking for a whole bufio buffer; or a
// raw conn its server declared Idle; or a conn handed over already.
func (c *conn) idleRead(f uint32, n int) bool {
	return f&(fRawIdle|fGone) != 0 || f&fArrived == 0 && n == idleReadLen
}

// noteRead is Read's slow path: the first bytes since the conn became
// idle, the first since the idle closer looked, or the first bytes of the
// conn.
func (c *conn) noteRead(p []byte) {
	if c.flags.Load()&fPrefaceDone == 0 {
		c.matchPreface(p)
	}
	old := c.flags.Or(fArrived | fRecent)
	if old&fRawIdle != 0 {
		c.flags.And(^fRawIdle) // the message is here: Idle again to move
	}
	if old&fAdoptWait != 0 {
		c.startAdopted()
	}
	if old&fArrived == 0 {
		if f := c.l.test.arrived; f != nil {
			f()
		}
	}
}

// matchPreface matches p, the next bytes read, against the HTTP/2 client
// preface; net/http peeks at it through Read before it serves a conn as
// h2c (http.Server.Protocols with SetUnencryptedHTTP2). Reads of one conn
// are not concurrent in net/http; the compare-and-swap keeps the match
// consistent for a raw server that does read concurrently.
func (c *conn) matchPreface(p []byte) {
	for {
		f := c.flags.Load()
		if f&fPrefaceDone != 0 {
			return
		}
		m := int(f&prefaceMask) >> prefaceShift
		k := min(len(p), len(h2Preface)-m)
		nf, h2 := f|fPrefaceDone, false
		switch {
		case string(p[:k]) != h2Preface[m:m+k]:
			// Not HTTP/2 in clear text: done looking.
		case m+k == len(h2Preface):
			h2 = true
		default:
			nf = f&^prefaceMask | uint32(m+k)<<prefaceShift
		}
		if c.flags.CompareAndSwap(f, nf) {
			if h2 {
				c.l.mu.Lock()
				c.l.setHTTP2Locked(c)
				c.l.mu.Unlock()
			}
			return
		}
	}
}

// setHTTP2Locked records that c speaks HTTP/2: counted in Counts.HTTP2,
// and never closed by the idle closer. The preface alone does not make a
// conn HTTP/2: net/http must serve it (a ConnState arrived).
func (l *Listener) setHTTP2Locked(c *conn) {
	if c.h2 || c.closed || !c.httpSeen {
		return
	}
	c.h2 = true
	l.http2++
	if c.timer != nil {
		c.timer.Stop()
	}
	c.flags.And(^fIdleRead)
	l.keepLocked(c) // HTTP/2 state lives in this process
	l.changedLocked()
}

// Write writes to the connection, unless it was handed over: another
// process answers on it now.
func (c *conn) Write(b []byte) (int, error) {
	if c.flags.Load()&fGone != 0 {
		return 0, c.goneError("write")
	}
	return c.Conn.Write(b)
}

// goneError is the error of a write on a conn handed over.
func (c *conn) goneError(op string) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: ErrHandedOver}
}

// SetDeadline sets the inner conn's deadlines, and notes the read
// deadline for a hand-over that has to wake a parked Read.
func (c *conn) SetDeadline(t time.Time) error {
	c.rdl.Store(deadlineNano(t))
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline sets the inner conn's read deadline, and notes it (see
// SetDeadline). On an adopted conn that waits for its first request, the
// deadline net/http sets for a new connection's header is kept for when
// the request starts; until then the server's idle timeout applies, as to
// any idle keep-alive connection.
func (c *conn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() && c.flags.Load()&fAdoptWait != 0 {
		c.hdrWait.Store(int64(max(time.Until(t), 1)))
		t = time.Time{}
		if c.idleTimeout > 0 {
			t = time.Now().Add(c.idleTimeout)
		}
	}
	c.rdl.Store(deadlineNano(t))
	return c.Conn.SetReadDeadline(t)
}

// startAdopted: the first bytes of an adopted conn's first request
// arrived; from now on the header timeout applies.
func (c *conn) startAdopted() {
	c.flags.And(^fAdoptWait)
	if d := c.hdrWait.Swap(0); d > 0 {
		t := time.Now().Add(time.Duration(d))
		c.rdl.Store(deadlineNano(t))
		_ = c.Conn.SetReadDeadline(t)
	}
}

func deadlineNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// ReadFrom keeps the inner conn's sendfile/splice path that net/http uses.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if c.flags.Load()&fGone != 0 {
		return 0, c.goneError("readfrom")
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite shuts down the writing side, if the inner conn can (net/http
// uses it to avoid a TCP reset after an early close). On a conn handed
// over it does nothing: the shutdown would reach the client through the
// other process's socket.
func (c *conn) CloseWrite() error {
	if c.flags.Load()&fGone != 0 {
		return nil
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// NetConn returns the conn that the listener accepted. Closing it directly
// bypasses tracking: the conn then stays counted until Drain's deadline.
func (c *conn) NetConn() net.Conn { return c.Conn }

// Close closes the connection. The first call counts; later calls return an
// error wrapping net.ErrClosed, as a net.TCPConn does. On a conn handed
// over (already closed here, with no FIN: the other process holds the
// socket) it returns nil.
func (c *conn) Close() error {
	l := c.l
	l.mu.Lock()
	if c.closed {
		moved := c.moved
		l.mu.Unlock()
		if moved {
			return nil
		}
		return &net.OpError{Op: "close", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: net.ErrClosed}
	}
	l.closeLocked(c, closedByPeerOrServer)
	l.mu.Unlock()
	return c.Conn.Close()
}

// closeLocked claims the close of c: counts, stats, timer, and release
// unless net/http still owns the conn (it releases it with StateClosed).
// The caller closes the inner conn after unlocking.
func (l *Listener) closeLocked(c *conn, why closeReason) {
	c.closed = true
	c.reason = why
	l.byState[c.state]--
	if c.h2 {
		l.http2--
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.flags.And(^(fIdleRead | fHandOver))
	if why == closedHandedOver {
		c.moved = true
		l.handedOver++
	}
	if d := l.drain; d != nil {
		switch why {
		case closedIdle:
			d.stats.ClosedIdle++
		case closedForced:
			d.stats.Forced++
		case closedHandedOver:
			d.stats.HandedOver++
		default:
			d.stats.ClosedByPeerOrServer++
		}
	}
	if !c.httpSeen || c.state == stHijacked || why == closedForced {
		l.releaseLocked(c)
	}
	l.changedLocked()
}

// releaseLocked stops tracking c and completes a drain if c was the last.
func (l *Listener) releaseLocked(c *conn) {
	if c.released {
		return
	}
	c.released = true
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next = nil, nil
	l.live--
	l.maybeDrainedLocked()
	l.changedLocked()
}

// setState applies an http.ConnState transition. wrapped says that
// ConnState saw the conn through a wrapper (TLS); h2 that the wrapper
// negotiated HTTP/2.
func (c *conn) setState(s connState, httpClosed, wrapped, h2 bool) {
	l := c.l
	l.mu.Lock()
	c.httpSeen = true
	if wrapped {
		c.wrapped = true
	}
	if c.closed {
		// net/http calls Close before StateClosed; a transition racing
		// with a close by us (idle closer, force) is ignored.
		if httpClosed {
			l.releaseLocked(c)
		}
		l.mu.Unlock()
		return
	}
	if httpClosed {
		// StateClosed without our Close: not done by net/http, but a
		// caller of ConnState might. Take it as the end of the conn.
		l.closeLocked(c, closedByPeerOrServer)
		l.releaseLocked(c)
		l.mu.Unlock()
		_ = c.Conn.Close()
		return
	}
	if h2 {
		l.setHTTP2Locked(c)
	}
	if c.state != s {
		l.byState[c.state]--
		l.byState[s]++
		c.state = s
		l.changedLocked()
	}
	idle := s == stIdle || s == stNew
	if idle {
		// The bytes read so far belong to the request just served (or,
		// through TLS, to the handshake); the next request is not here.
		c.flags.And(^fArrived)
	}
	if idle && !c.wrapped && !c.h2 {
		c.flags.Or(fIdleRead)
	} else {
		c.flags.And(^fIdleRead)
	}
	if c.wrapped || s == stHijacked {
		l.keepLocked(c) // TLS session state lives in this process
	}
	if f := c.flags.Load(); (f&fMarked != 0 || f&fHandOver != 0 && l.drain != nil) && !c.h2 {
		if idle {
			l.armIdleLocked(c, time.Now())
		} else if c.timer != nil {
			c.timer.Stop()
		}
	}
	l.mu.Unlock()
}

// armIdleLocked starts (or restarts) c's idle grace from since.
func (l *Listener) armIdleLocked(c *conn, since time.Time) {
	c.idleSince = since
	c.flags.And(^fRecent)
	if c.timer == nil {
		c.timer = time.AfterFunc(l.grace, c.idleCheck)
	} else {
		c.timer.Reset(l.grace)
	}
}

// idleCheck runs when c's idle grace may have passed. It closes c if it
// has been continuously idle for the whole grace and no next request has
// started to arrive; otherwise it re-arms or does nothing. It never
// closes an HTTP/2 conn: closing one without a GOAWAY can lose the
// request its client is sending.
func (c *conn) idleCheck() {
	l := c.l
	if f := l.test.idleChecked; f != nil {
		defer f()
	}
	l.mu.Lock()
	if c.closed || c.h2 || (c.state != stIdle && c.state != stNew) {
		l.mu.Unlock()
		return
	}
	f := c.flags.Load()
	if f&fMoving != 0 || f&fHandOver != 0 && l.ho != nil && c.movableLocked(f) {
		// Being handed over, or waiting for its next request in a way
		// that lets it move, which the hand-over in progress does once
		// Read runs: with thousands of conns woken at once on a busy
		// machine, that can take longer than the grace, which is the
		// fallback for a conn that cannot move, not a deadline for one
		// that will. The drain's deadline still bounds it, and a failed
		// hand-over re-arms the grace of every conn it leaves here.
		c.timer.Reset(l.grace)
		l.mu.Unlock()
		return
	}
	if f&fMarked == 0 && (f&fHandOver == 0 || l.drain == nil) {
		// No longer draining (Undrain) and never marked.
		l.mu.Unlock()
		return
	}
	since := c.idleSince
	if left := l.grace - time.Since(since); left > 0 {
		c.timer.Reset(left) // went active and idle again meanwhile
		l.mu.Unlock()
		return
	}
	// Before a wrapped conn's first request, the bytes it read may be
	// the TLS handshake's rather than a request's: only bytes since the
	// last look count.
	handshake := c.wrapped && c.state == stNew
	l.mu.Unlock()

	// Take fRecent and clear it in one step: a Read from now on sets it
	// again for the next look.
	f = c.flags.And(^fRecent)
	busy := f&fRecent != 0 || (f&fArrived != 0 && !handshake)
	// Outside the lock: a syscall per conn must not hold up the others.
	busy = busy || peek.Pending(c.Conn)

	l.mu.Lock()
	if c.closed || c.h2 || (c.state != stIdle && c.state != stNew) || !c.idleSince.Equal(since) {
		l.mu.Unlock()
		return
	}
	if c.flags.Load()&fMoving != 0 {
		busy = true // a hand-over took it meanwhile
	}
	if busy {
		// The next request is arriving; net/http will report StateActive.
		// Check again later rather than trust it. fRecent stays as Read
		// left it since the look above.
		c.idleSince = time.Now()
		c.timer.Reset(l.grace)
		l.mu.Unlock()
		return
	}
	l.closeLocked(c, closedIdle)
	l.mu.Unlock()
	_ = c.Conn.Close()
}
