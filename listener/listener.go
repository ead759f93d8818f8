package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// DefaultIdleGrace is the default for [Options.IdleGrace].
const DefaultIdleGrace = 300 * time.Millisecond

// Options configures [Wrap]. The zero value means "all defaults".
type Options struct {
	// IdleGrace is how long a connection marked by a drain must have
	// stayed continuously idle (StateIdle, or StateNew: accepted but no
	// request yet) before the listener closes it. The clock starts when
	// Drain starts or when the connection last became idle, whichever is
	// later. A connection that becomes active again within the grace is
	// not closed; its response carries "Connection: close" instead. Nor is
	// one on which bytes of the next request have arrived, however long
	// the rest takes. (Through TLS, before the first request, only bytes
	// that arrived within the last grace count: the handshake's cannot be
	// told from a request's.)
	// Zero or negative means DefaultIdleGrace.
	IdleGrace time.Duration

	// Logger receives drain progress (Info), force-closes at a drain's
	// deadline (Warn, with the error Drain returns) and pauses (Debug).
	// Records say "listener: ..." and carry the drain's figures under
	// flat keys (conns, closed_idle, closed_by_peer_or_server, forced,
	// duration). Nil discards them.
	Logger *slog.Logger
}

// deadliner is implemented by *net.TCPListener and *net.UnixListener: Pause
// uses it to interrupt a pending Accept.
type deadliner interface {
	SetDeadline(time.Time) error
}

// Listener is a net.Listener that tracks the connections it accepts, can
// stop taking new ones from the kernel without closing the socket (Pause),
// and can drain its connections (Drain). Create it with [Wrap]. All methods
// are safe for concurrent use.
type Listener struct {
	inner net.Listener
	dl    deadliner // nil if inner cannot be interrupted
	grace time.Duration
	log   *slog.Logger

	closeOnce sync.Once
	closeErr  error
	closed    chan struct{} // closed by Close

	mu         sync.Mutex
	finishing  bool // Finish: accept the backlog, then close
	paused     bool
	resume     chan struct{} // closed by Resume; replaced by Pause
	pauseGen   uint64        // incremented by every Pause
	inAccept   int           // goroutines inside inner.Accept (counted only if dl != nil)
	head       *conn         // list of tracked conns (not yet released)
	live       int           // len(list)
	byState    [numStates]int
	http2      int // open conns known to speak HTTP/2
	accepted   uint64
	drain      *drainState            // the drain in progress: nil until Drain, and after Undrain
	drainingCh chan struct{}          // closed when a drain starts; replaced by Undrain
	waiters    map[chan struct{}]bool // Await calls, signalled by changedLocked

	// The hand-over (handover.go).
	hoSend     SendFunc      // set by HandOver: the next drain hands over
	ho         *handOver     // the hand-over in progress, nil if none
	handedOver uint64        // conns ever handed over
	adopted    []net.Conn    // handed over to this listener, for Accept
	adoptedN   uint64        // conns ever adopted
	adoptCh    chan struct{} // signalled by Adopt, for an Accept that waits
	kicked     bool          // Adopt interrupted the inner Accept

	test testHooks
}

// testHooks are seams for tests (set in export_test.go before use).
type testHooks struct {
	// changed is called, with l.mu held, after every change of the
	// tracked state: counts, Accept entering or leaving the inner Accept,
	// Drain calls starting or ending their wait.
	changed func()
	// idleChecked is called, without locks, after every run of a conn's
	// idle-grace timer.
	idleChecked func()
	// arrived is called, without locks, by Read when the first bytes
	// arrive on a conn since it last became idle.
	arrived func()
	// beforePeek is called, without locks, by a hand-over just before it
	// looks for bytes of a next request.
	beforePeek func()
}

// changedLocked wakes the Await calls and the test hook after a change of
// the tracked state. With nobody waiting it costs a length check.
func (l *Listener) changedLocked() {
	if len(l.waiters) > 0 {
		for ch := range l.waiters {
			select {
			case ch <- struct{}{}:
			default: // a wake-up is already pending: it sees this change too
			}
		}
	}
	if f := l.test.changed; f != nil {
		f()
	}
}

// Wrap returns a tracked Listener around ln. The Listener owns ln from now
// on: Close closes it. Accept on ln must no longer be called directly.
//
// Wrap the plain TCP (or unix) listener, not a TLS one: put TLS on top
// (srv.ServeTLS(l, ...) or tls.NewListener(l, cfg)), so that net/http still
// sees a *tls.Conn and Pause can interrupt Accept.
func Wrap(ln net.Listener, opts Options) *Listener {
	if opts.IdleGrace <= 0 {
		opts.IdleGrace = DefaultIdleGrace
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Listener{
		inner:      ln,
		grace:      opts.IdleGrace,
		log:        opts.Logger,
		closed:     make(chan struct{}),
		drainingCh: make(chan struct{}),
		adoptCh:    make(chan struct{}, 1),
	}
	l.dl, _ = ln.(deadliner)
	return l
}

// Unwrap returns the listener given to Wrap. Accepting from it directly
// bypasses tracking.
func (l *Listener) Unwrap() net.Listener { return l.inner }

// Addr returns the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Accept waits for and returns the next connection. While the Listener is
// paused, Accept blocks without calling the inner Accept, so connections
// stay in the kernel's backlog (for another process sharing the socket to
// take). After Close it returns an error that wraps [net.ErrClosed].
// Connections handed to [Listener.Adopt] come out first, paused or not.
//
// A connection the inner Accept returned while Pause raced with it is
// returned to the caller: it is never dropped.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		if c := l.takeAdopted(); c != nil {
			return c, nil
		}
		if err := l.waitUnpaused(); err != nil {
			return nil, err
		}
		l.mu.Lock()
		if l.paused || len(l.adopted) > 0 { // paused again, or adopted, since waitUnpaused
			l.mu.Unlock()
			continue
		}
		gen := l.pauseGen
		fin := l.finishing && l.dl != nil
		if l.dl != nil {
			l.inAccept++
			switch {
			case fin:
				// Try the backlog without waiting for new arrivals. A
				// deadline in the past would not even try: give it 1 ms.
				_ = l.dl.SetDeadline(time.Now().Add(time.Millisecond))
			case l.kicked:
				_ = l.dl.SetDeadline(time.Time{}) // Adopt's interruption is over
			}
			l.kicked = false
		}
		l.changedLocked()
		l.mu.Unlock()

		c, err := l.inner.Accept()

		l.mu.Lock()
		if l.dl != nil {
			l.inAccept--
		}
		if err != nil {
			timeout := errors.Is(err, os.ErrDeadlineExceeded)
			if timeout && fin {
				// The backlog is empty: Finish is done.
				l.maybeDrainedLocked()
				l.changedLocked()
				l.mu.Unlock()
				_ = l.Close()
				return nil, l.closedError()
			}
			retry := timeout && (l.paused || l.pauseGen != gen || l.finishing || l.kicked || len(l.adopted) > 0)
			l.maybeDrainedLocked()
			l.changedLocked()
			l.mu.Unlock()
			if retry {
				continue // interrupted by Pause
			}
			if l.isClosed() && !errors.Is(err, net.ErrClosed) {
				return nil, l.closedError()
			}
			return nil, err
		}
		tc := l.trackLocked(c)
		l.mu.Unlock()
		return tc, nil
	}
}

// takeAdopted returns the next adopted conn, tracked, or nil.
func (l *Listener) takeAdopted() net.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.adopted) == 0 || l.isClosed() {
		return nil
	}
	nc := l.adopted[0]
	l.adopted[0] = nil
	l.adopted = l.adopted[1:]
	l.adoptedN++
	c := l.trackLocked(nc)
	c.flags.Or(fAdoptWait)
	return c
}

// waitUnpaused blocks while the listener is paused and nothing was
// adopted. It returns the closed error once Close has been called.
func (l *Listener) waitUnpaused() error {
	for {
		if l.isClosed() {
			return l.closedError()
		}
		l.mu.Lock()
		paused, resume, adopted := l.paused, l.resume, len(l.adopted) > 0
		l.mu.Unlock()
		if !paused || adopted {
			return nil
		}
		select {
		case <-resume:
		case <-l.adoptCh:
		case <-l.closed:
		}
	}
}

func (l *Listener) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}

func (l *Listener) closedError() error {
	a := l.inner.Addr()
	return &net.OpError{Op: "accept", Net: a.Network(), Addr: a, Err: net.ErrClosed}
}

// Close closes the inner listener and makes Accept return an error wrapping
// net.ErrClosed. It does not close tracked connections (use Drain) and it
// does not end a drain; adopted connections that Accept has not returned
// yet are closed. Close does not block, and is idempotent: later calls
// return the first call's result.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		close(l.closed)
		left := l.adopted
		l.adopted = nil
		l.mu.Unlock()
		for _, c := range left {
			_ = c.Close()
		}
		l.closeErr = l.inner.Close()
	})
	return l.closeErr
}

// Finish takes the connections already waiting in the kernel's backlog and
// then closes the listener. Use it for a final stop, when no other process
// shares the socket: closing the listener outright makes the kernel reset
// every connection it had already completed on the server's behalf. The
// queued connections come out of Accept as usual, so the server must still
// be calling Accept; Finish returns when the backlog is empty and the
// listener closed, or closes it when ctx ends first. Call Drain after it.
// Finish resumes a paused listener to take the backlog; it is idempotent.
// Without SetDeadline on the inner listener it just closes it.
func (l *Listener) Finish(ctx context.Context) error {
	l.mu.Lock()
	if l.dl == nil {
		l.mu.Unlock()
		return l.Close()
	}
	if !l.finishing {
		l.finishing = true
		// Wake an Accept blocked without a deadline; it retries in
		// finishing mode.
		_ = l.dl.SetDeadline(time.Now())
		if l.paused {
			l.paused = false
			close(l.resume)
		}
	}
	l.mu.Unlock()
	select {
	case <-l.closed:
		return nil
	case <-ctx.Done():
		_ = l.Close()
		return nil
	}
}

// Pause stops taking connections from the kernel: a pending inner Accept is
// interrupted (by setting a deadline in the past on the inner listener, when
// it has SetDeadline as *net.TCPListener and *net.UnixListener do), and
// Accept blocks until Resume or Close. Connections keep queueing in the
// socket's backlog, where another listener on the same socket (another
// process during an upgrade) accepts them. Pause does not block and is
// idempotent.
func (l *Listener) Pause() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pauseLocked()
}

func (l *Listener) pauseLocked() {
	if l.paused {
		return
	}
	l.paused = true
	l.pauseGen++
	l.resume = make(chan struct{})
	if l.dl != nil {
		// An error here (listener closed) leaves nothing to interrupt.
		_ = l.dl.SetDeadline(time.Now())
	}
	l.log.Debug("listener: paused", "addr", l.inner.Addr().String())
}

// Resume undoes Pause. It does not block, is idempotent, and is a no-op
// while a drain is in progress (Drain was called and Undrain was not
// called since): a draining listener stays paused. [Listener.Undrain]
// resumes it.
func (l *Listener) Resume() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.drain != nil {
		return
	}
	l.resumeLocked()
}

func (l *Listener) resumeLocked() {
	if !l.paused {
		return
	}
	l.paused = false
	if l.dl != nil {
		_ = l.dl.SetDeadline(time.Time{})
	}
	close(l.resume)
	l.log.Debug("listener: resumed", "addr", l.inner.Addr().String())
}

// Paused reports whether the listener is paused (Pause, or a drain in
// progress).
func (l *Listener) Paused() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.paused
}

// Counts is a snapshot of a Listener's open connections by state.
type Counts struct {
	Active   int    // serving a request; also every conn of a raw TCP server (no ConnState ever)
	Idle     int    // HTTP keep-alive conns between requests
	New      int    // HTTP conns accepted that have not started a request yet
	Hijacked int    // hijacked by a handler (WebSockets) and not yet closed
	Accepted uint64 // connections ever returned by Accept, adopted ones included

	// Adopted counts the connections ever handed to this listener by
	// another process (Adopt) and returned by Accept; HandedOver those
	// it ever handed over to another process (HandOver).
	Adopted, HandedOver uint64

	// HTTP2 counts the open connections known to speak HTTP/2: over TLS,
	// those that negotiated "h2"; in clear text, those that began with
	// the HTTP/2 client preface (h2c with prior knowledge). They are a
	// subset of the counts above (an HTTP/2 connection is Active while a
	// stream is open, Idle otherwise), not an addition to them.
	HTTP2 int
}

// Open returns the number of open connections: Active+Idle+New+Hijacked.
func (c Counts) Open() int { return c.Active + c.Idle + c.New + c.Hijacked }

// Counts returns the connections open now, by state. The snapshot is
// consistent: all fields are read at one instant. A connection leaves the
// counts as soon as it is closed.
func (l *Listener) Counts() Counts {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.countsLocked()
}

func (l *Listener) countsLocked() Counts {
	return Counts{
		Active:     l.byState[stActive],
		Idle:       l.byState[stIdle],
		New:        l.byState[stNew],
		Hijacked:   l.byState[stHijacked],
		Accepted:   l.accepted,
		Adopted:    l.adoptedN,
		HandedOver: l.handedOver,
		HTTP2:      l.http2,
	}
}

// Await blocks until cond holds for the listener's counts, or ctx is done.
// It calls cond with a snapshot of [Listener.Counts] at once, and again
// after every change of the tracked state (changes in quick succession may
// be seen as one: cond gets the latest snapshot); it does not poll. cond
// runs without the listener's lock held and may call its methods. Await
// returns nil once cond returned true, or, once ctx is done, an error
// wrapping [context.Cause] of ctx (and ctx.Err() if the cause is another
// error). It is safe for concurrent use. A waiting Await costs each change
// of the state a non-blocking channel send; with none waiting, nothing.
//
// With HTTP/2 it is the step between Drain and http.Server.Shutdown (see
// the package documentation): wait until only HTTP/2 connections are left,
//
//	err := l.Await(ctx, func(c listener.Counts) bool { return c.Open()-c.HTTP2 == 0 })
//
// then call Shutdown, which sends each of them a GOAWAY.
func (l *Listener) Await(ctx context.Context, cond func(Counts) bool) error {
	ch := make(chan struct{}, 1)
	l.mu.Lock()
	if l.waiters == nil {
		l.waiters = make(map[chan struct{}]bool)
	}
	l.waiters[ch] = true
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.waiters, ch)
		l.mu.Unlock()
	}()
	for {
		// Registered before the snapshot: a change after it signals ch.
		if cond(l.Counts()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if cause := context.Cause(ctx); cause != ctx.Err() {
				return fmt.Errorf("listener: await %s: %w (%w)", l.inner.Addr(), cause, ctx.Err())
			}
			return fmt.Errorf("listener: await %s: %w", l.inner.Addr(), ctx.Err())
		}
	}
}

// Draining returns a channel that is closed when a drain starts. Raw TCP
// servers watch it to finish their connections. After [Listener.Undrain]
// it returns a new channel, for the next drain; a channel obtained before
// stays closed (the connections that saw it keep winding down).
func (l *Listener) Draining() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.drainingCh
}
