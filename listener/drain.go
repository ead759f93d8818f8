package listener

import (
	"context"
	"fmt"
	"net"
	"time"
)

// DrainStats describes a drain.
type DrainStats struct {
	// Conns is the number of connections open when Drain started.
	Conns int
	// ClosedIdle counts connections Drain closed after IdleGrace of idleness.
	ClosedIdle int
	// ClosedByPeerOrServer counts connections closed otherwise: by the
	// server after a "Connection: close" response, by the client, or by
	// a raw TCP server or a hijacking handler.
	ClosedByPeerOrServer int
	// Forced counts connections force-closed when the context was done.
	Forced int
	// Duration is the time from the start of the drain to its end (the
	// release of the last connection, or the force-close), or to now if
	// neither has happened yet.
	Duration time.Duration
}

// The three Closed counts cover every connection closed after the drain
// started; they add up to Conns unless a connection was accepted during
// the drain (a Pause racing with a pending Accept), which is counted too.

type drainState struct {
	start time.Time
	end   time.Time     // zero until done is closed
	done  chan struct{} // closed when no tracked conn is left
	stats DrainStats
}

// maybeDrainedLocked completes the drain once no conn is tracked and no
// Accept that Pause interrupted can still return one.
func (l *Listener) maybeDrainedLocked() {
	d := l.drain
	if d == nil || !d.end.IsZero() || l.live > 0 || l.inAccept > 0 {
		return
	}
	d.end = time.Now()
	d.stats.Duration = d.end.Sub(d.start)
	close(d.done)
}

func (l *Listener) statsLocked() DrainStats {
	s := l.drain.stats
	if l.drain.end.IsZero() {
		s.Duration = time.Since(l.drain.start)
	}
	return s
}

// Drain gracefully ends every connection of the listener and blocks until
// none is left or ctx is done. In order, it:
//
//  1. pauses accepting (the listener is not closed: during an upgrade the
//     socket is shared with the new process; the caller closes it) and
//     closes the Draining channel;
//  2. marks every connection draining: the next response on each HTTP
//     keep-alive connection carries "Connection: close" (set by the
//     handler that ConfigureServer installs), after which net/http closes
//     the connection;
//  3. closes an idle or new HTTP connection only once it has stayed idle
//     for IdleGrace (counted from the start of the drain at the earliest),
//     so that a request a client sends on it meanwhile is still answered;
//  4. waits for active requests, streamed responses, hijacked connections
//     and raw TCP connections to end on their own.
//
// Drain returns as soon as the last connection is closed (with nil error),
// or, when ctx is done first, force-closes every remaining connection and
// returns an error that wraps ctx.Err(). Then call http.Server.Shutdown,
// which finds no connection left and returns at once.
//
// Drain with no connection returns at once. (With an inner listener that
// has no SetDeadline, an Accept already pending when Drain starts cannot be
// interrupted and may still return a connection after Drain returned.) Drain may be called more than
// once, also concurrently: every call waits for the same drain (each
// force-closes at the end of its own ctx), and the stats are those of that
// one drain; a call that finds the drain complete returns at once with a
// nil error (see Forced for what an earlier call cut off). Once Drain has
// started the listener stays paused: Resume is a no-op.
func (l *Listener) Drain(ctx context.Context) (DrainStats, error) {
	l.mu.Lock()
	d := l.drain
	if d == nil {
		d = l.startDrainLocked()
	}
	l.mu.Unlock()

	forced, left := 0, 0
	select {
	case <-d.done:
	case <-ctx.Done():
		select {
		case <-d.done: // finished at the same moment: not a failure
		default:
			// left == 0 when only an Accept interrupted by Pause was
			// still on its way back: nothing was cut off.
			forced, left = l.forceClose()
		}
	}
	if left > 0 {
		l.mu.Lock()
		s := l.statsLocked()
		l.mu.Unlock()
		l.log.Warn("listener drain deadline: connections force-closed",
			"addr", l.inner.Addr(), "left", left, "forced", forced, "stats", s)
		return s, fmt.Errorf("listener: drain %s: %d connections left at the deadline (%d force-closed): %w",
			l.inner.Addr(), left, forced, ctx.Err())
	}
	l.mu.Lock()
	s := l.statsLocked()
	l.mu.Unlock()
	l.log.Info("listener drained", "addr", l.inner.Addr(),
		"conns", s.Conns, "closed_idle", s.ClosedIdle,
		"closed_by_peer_or_server", s.ClosedByPeerOrServer, "forced", s.Forced,
		"duration", s.Duration)
	return s, nil
}

func (l *Listener) startDrainLocked() *drainState {
	now := time.Now()
	d := &drainState{start: now, done: make(chan struct{})}
	for c := l.head; c != nil; c = c.next {
		if !c.closed {
			d.stats.Conns++
		}
	}
	l.drain = d
	l.draining.Store(true)
	l.pauseLocked()
	close(l.drainingCh)
	for c := l.head; c != nil; c = c.next {
		if !c.closed && (c.state == stIdle || c.state == stNew) {
			l.armIdleLocked(c, now)
		}
	}
	l.log.Info("listener draining", "addr", l.inner.Addr(), "conns", d.stats.Conns, "idle_grace", l.grace)
	l.maybeDrainedLocked()
	return d
}

// forceClose closes every tracked conn, releases them all and completes
// the drain. It returns how many conns it closed and how many were still
// tracked (the closed ones plus those closed already but still held by
// net/http, for instance by a handler that ignores its context).
func (l *Listener) forceClose() (closed, left int) {
	l.mu.Lock()
	var toClose []net.Conn
	for c := l.head; c != nil; {
		next := c.next
		left++
		if !c.closed {
			l.closeLocked(c, closedForced) // releases c
			toClose = append(toClose, c.Conn)
		} else {
			l.releaseLocked(c)
		}
		c = next
	}
	// An Accept that Pause interrupted may still be on its way back; do
	// not wait for it any longer. A conn it returns is tracked and served
	// as any conn accepted while draining, but no Drain waits for it.
	if d := l.drain; d.end.IsZero() {
		d.end = time.Now()
		d.stats.Duration = d.end.Sub(d.start)
		close(d.done)
	}
	l.mu.Unlock()
	for _, nc := range toClose {
		_ = nc.Close()
	}
	return len(toClose), left
}
