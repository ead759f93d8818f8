package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// HandedOver counts connections handed over to the process that took
	// over the listener's socket (see Listener.HandOver): that process
	// serves them now.
	HandedOver int
	// Duration is the time from the start of the drain to its end (the
	// release of the last connection, or the force-close), or to now if
	// neither has happened yet.
	Duration time.Duration
}

// Kept returns the number of connections the drain ended in this process
// rather than handing them over: ClosedIdle + ClosedByPeerOrServer +
// Forced.
func (s DrainStats) Kept() int { return s.ClosedIdle + s.ClosedByPeerOrServer + s.Forced }

// Kept and HandedOver cover every connection closed or handed over after
// the drain started; they add up to Conns unless a connection was accepted
// during the drain (a Pause racing with a pending Accept), which is counted
// too.

// ErrUndrained is wrapped by the error of a Drain call whose drain was
// called off by [Listener.Undrain] before it completed.
var ErrUndrained = errors.New("listener: drain called off by Undrain")

type drainState struct {
	start   time.Time
	end     time.Time     // zero until done is closed
	done    chan struct{} // closed when no tracked conn is left
	undone  chan struct{} // closed by Undrain before done
	undoneT time.Time     // when Undrain called the drain off; zero before
	calls   int           // Drain calls waiting for this drain
	stats   DrainStats
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

func (d *drainState) statsLocked() DrainStats {
	s := d.stats
	switch {
	case !d.end.IsZero():
	case !d.undoneT.IsZero():
		s.Duration = d.undoneT.Sub(d.start)
	default:
		s.Duration = time.Since(d.start)
	}
	return s
}

// Drain gracefully ends every connection of the listener and blocks until
// none is left, ctx is done, or [Listener.Undrain] calls the drain off. In
// order, it:
//
//  1. pauses accepting (the listener is not closed: during an upgrade the
//     socket is shared with the new process; the caller closes it) and
//     closes the Draining channel;
//  2. marks every open connection draining (and every connection
//     accepted until the drain is called off): the next response on each
//     marked HTTP connection carries "Connection: close" (set by the
//     handler that ConfigureServer installs), after which net/http closes
//     an HTTP/1 connection, and sends a GOAWAY on an HTTP/2 one and closes
//     it once its streams are done;
//  3. closes an idle or new HTTP/1 connection only once it has stayed
//     idle for IdleGrace (counted from the start of the drain at the
//     earliest), so that a request a client sends on it meanwhile is
//     still answered, and never while a request has partly arrived on it;
//  4. waits for active requests, streamed responses, hijacked connections,
//     raw TCP connections and HTTP/2 connections to end on their own.
//
// With a hand-over ([Listener.HandOver]) the connections that can move
// skip steps 2 and 3: each is handed to the other process as soon as it
// waits for its next request (at once for those idle when the drain
// starts), and its response meanwhile does not say "Connection: close".
//
// Drain never closes an idle HTTP/2 connection before ctx is done: closed
// without a GOAWAY, its client could lose the request it is sending. Only
// http.Server.Shutdown sends every HTTP/2 connection a GOAWAY at once. So,
// when HTTP/2 is served, run Drain in a goroutine, wait with
// [Listener.Await] until only HTTP/2 connections are left, then call
// Shutdown; Drain returns when Shutdown has closed them (see the package
// documentation).
//
// Drain returns as soon as the last connection is closed (with nil error),
// or, when ctx is done first, force-closes every remaining connection and
// returns an error that wraps ctx.Err(), or, when Undrain calls the drain
// off first, returns at once an error wrapping [ErrUndrained]. The stats
// are those of the drain so far. After a complete drain, call
// http.Server.Shutdown, which finds no connection left and returns at once.
//
// Drain with no connection returns at once. (With an inner listener that
// has no SetDeadline, an Accept already pending when Drain starts cannot be
// interrupted and may still return a connection after Drain returned.)
// Drain may be called more than once, also concurrently: every call waits
// for the same drain (each force-closes at the end of its own ctx), and the
// stats are those of that one drain; a call that finds the drain complete
// returns at once with a nil error (see Forced for what an earlier call cut
// off). While a drain is in progress, complete or not, the listener stays
// paused (Resume is a no-op) until Undrain; a Drain after Undrain starts a
// new drain.
func (l *Listener) Drain(ctx context.Context) (DrainStats, error) {
	l.mu.Lock()
	d := l.drain
	var wake []*conn
	if d == nil {
		d, wake = l.startDrainLocked()
	}
	d.calls++
	l.changedLocked()
	l.mu.Unlock()
	wakeAll(wake)

	select {
	case <-d.done:
	case <-d.undone:
	case <-ctx.Done():
	}

	l.mu.Lock()
	d.calls--
	l.changedLocked()
	var toClose []net.Conn
	left, undone := 0, false
	switch {
	case !d.end.IsZero():
		// Complete, maybe at the moment ctx ended or Undrain was called:
		// not a failure.
	case !d.undoneT.IsZero():
		undone = true
	default:
		// left == 0 when only an Accept interrupted by Pause was still on
		// its way back: nothing was cut off.
		toClose, left = l.forceCloseLocked(d)
	}
	s := d.statsLocked()
	l.mu.Unlock()
	for _, nc := range toClose {
		_ = nc.Close()
	}

	addr := l.inner.Addr()
	switch {
	case undone:
		return s, fmt.Errorf("listener: drain %s: %w", addr, ErrUndrained)
	case left > 0:
		err := fmt.Errorf("listener: drain %s: %d connections left at the deadline (%d force-closed): %w",
			addr, left, len(toClose), ctx.Err())
		l.logDrain(slog.LevelWarn, "listener: drain deadline: connections force-closed", s,
			slog.Int("left", left), slog.Any("error", err))
		return s, err
	}
	l.logDrain(slog.LevelInfo, "listener: drained", s)
	return s, nil
}

// logDrain writes a record about a drain: the address, the figures of s
// under flat snake_case keys (duration the drain's), then extra.
func (l *Listener) logDrain(level slog.Level, msg string, s DrainStats, extra ...slog.Attr) {
	if !l.log.Enabled(context.Background(), level) {
		return
	}
	attrs := append([]slog.Attr{
		slog.Any("addr", l.inner.Addr().String()),
		slog.Int("conns", s.Conns),
		slog.Int("closed_idle", s.ClosedIdle),
		slog.Int("closed_by_peer_or_server", s.ClosedByPeerOrServer),
		slog.Int("forced", s.Forced),
		slog.Int("handed_over", s.HandedOver),
		slog.Int("kept", s.Kept()),
		slog.Duration("duration", s.Duration),
	}, extra...)
	l.log.LogAttrs(context.Background(), level, msg, attrs...)
}

// startDrainLocked starts a drain: with a hand-over (HandOver), every
// conn that can move is to be handed over; it marks every other open conn
// (a conn still marked by a drain that Undrain called off keeps its grace
// running) and starts the grace of the idle ones. It returns the conns
// to wake for the hand-over once the lock is released.
func (l *Listener) startDrainLocked() (*drainState, []*conn) {
	now := time.Now()
	d := &drainState{start: now, done: make(chan struct{}), undone: make(chan struct{})}
	l.drain = d
	l.pauseLocked()
	close(l.drainingCh)
	var wake []*conn
	if l.hoSend != nil {
		wake = l.startHandOverLocked()
	}
	for c := l.head; c != nil; c = c.next {
		if c.closed {
			continue
		}
		d.stats.Conns++
		f := c.flags.Load()
		if f&fMarked != 0 {
			continue
		}
		if f&fHandOver == 0 {
			c.flags.Or(fMarked)
		}
		if (c.state == stIdle || c.state == stNew) && !c.h2 {
			// For a conn to hand over, the grace is the fallback if it
			// never waits for a request in a way that lets it move.
			l.armIdleLocked(c, now)
		}
	}
	l.log.Info("listener: draining", "addr", l.inner.Addr().String(), "conns", d.stats.Conns, "idle_grace", l.grace,
		"hand_over", l.ho != nil)
	l.maybeDrainedLocked()
	return d, wake
}

// Undrain calls off the drain in progress, for a rollback: the process
// that was taking over died, and this one serves on. Every Drain call
// waiting for the drain returns at once with an error wrapping
// [ErrUndrained] and the stats so far, and the listener resumes accepting
// (unless it is closed or finishing); the next [Listener.Draining] channel
// is a new one.
//
// The connections marked by the drain stay marked and keep winding down
// without losing a request: the next response on each says
// "Connection: close" and the idle closer still closes them after
// IdleGrace, but nothing waits for them. Connections accepted from now on
// are not marked. A hand-over (HandOver) ends: connections not moved yet
// are served here as any other, and the next Drain hands over only after
// another HandOver. A later Drain starts a new drain, which covers every
// open connection, still-marked ones included.
//
// Undrain reports whether a drain was in progress: Drain had been called
// since the listener was made or last undrained, whether or not the drain
// had completed. It does not block, is idempotent (a second call returns
// false) and is safe for concurrent use.
func (l *Listener) Undrain() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.drain
	if d == nil {
		return false
	}
	l.drain = nil
	l.stopHandOverLocked()
	if d.end.IsZero() {
		d.undoneT = time.Now()
		close(d.undone)
	}
	l.drainingCh = make(chan struct{})
	if !l.finishing && !l.isClosed() {
		l.resumeLocked()
	}
	l.logDrain(slog.LevelInfo, "listener: drain called off", d.statsLocked(),
		slog.Int("drain_calls", d.calls), slog.Int("open", l.live))
	return true
}

// forceCloseLocked claims the close of every tracked conn, releases them
// all and completes the drain d, the one in progress. It returns the
// conns to close once the lock is released and how many conns were still
// tracked (those plus the ones closed already but still held by
// net/http, for instance by a handler that ignores its context).
func (l *Listener) forceCloseLocked(d *drainState) (toClose []net.Conn, left int) {
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
	if d.end.IsZero() {
		d.end = time.Now()
		d.stats.Duration = d.end.Sub(d.start)
		close(d.done)
	}
	return toClose, left
}
