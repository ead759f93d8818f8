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
// Drain with no connection returns at once. Drain may be called more than
// once, also concurrently: every call waits for the same drain (each
// force-closes at the end of its own ctx), and the stats are those of that
// one drain. Once Drain has started the listener stays paused: Resume is a
// no-op.
func (l *Listener) Drain(ctx context.Context) (DrainStats, error) {
	l.mu.Lock()
	d := l.drain
	if d == nil {
		d = l.startDrainLocked()
	}
	l.mu.Unlock()

	select {
	case <-d.done:
	case <-ctx.Done():
		select {
		case <-d.done: // finished at the same moment: not a failure
		default:
			n := l.forceClose()
			l.mu.Lock()
			s := l.statsLocked()
			l.mu.Unlock()
			l.log.Warn("listener drain deadline: connections force-closed",
				"addr", l.inner.Addr(), "forced", n, "stats", s)
			return s, fmt.Errorf("listener: drain %s: %d connections force-closed: %w", l.inner.Addr(), n, ctx.Err())
		}
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

// forceClose closes every tracked conn and releases them all, so that the
// drain is complete. It returns how many it closed.
func (l *Listener) forceClose() int {
	l.mu.Lock()
	var toClose []net.Conn
	for c := l.head; c != nil; {
		next := c.next
		if !c.closed {
			l.closeLocked(c, closedForced) // releases c
			toClose = append(toClose, c.Conn)
		} else {
			// Closed already, waiting for net/http's StateClosed, which a
			// handler that ignores its context may hold up: stop waiting.
			l.releaseLocked(c)
		}
		c = next
	}
	l.mu.Unlock()
	for _, nc := range toClose {
		_ = nc.Close()
	}
	return len(toClose)
}
