package upgrader

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/handoff-go/handoff/internal/control"
	"github.com/handoff-go/handoff/internal/fdpass"
	"github.com/handoff-go/handoff/listener"
)

// drainPlan is what the state machine tells Drain.
type drainPlan struct {
	// final: no other process shares the sockets (a stop of the
	// generation in charge, or a failed first start): each listener first
	// takes what the kernel queued, then closes.
	final bool
	// reclaimed: the successor died before the drain started; this
	// generation is in charge again and must not drain.
	reclaimed bool
	// childGone, when set, is closed once the new process of an upgrade
	// being rolled back is gone. A final stop accepts until then: that
	// process holds the same sockets, and connections the kernel queues
	// while it dies must not be left to it.
	childGone <-chan struct{}
	// handOver, when set, is the fd channel to the committed successor,
	// and keys the listeners that adopt: their connections are handed
	// over rather than ended.
	handOver *fdpass.Conn
	keys     []string
	// adopting, when set, is closed once the fd channel from the previous
	// generation ended. A final stop adopts until then (bounded by
	// adoptWait): the previous generation, told that this one stops,
	// sends nothing more, but what it sent already must find listeners
	// open.
	adopting <-chan struct{}
}

// adoptWait bounds how long a final stop waits for the previous
// generation's fd channel to end.
const adoptWait = 2 * time.Second

type drainResult struct {
	stats listener.DrainStats
	err   error
}

// drainRun is one drain; concurrent Drain and StopAccepting calls share it.
type drainRun struct {
	planned     chan struct{} // closed once plan is set
	plan        drainPlan
	await       context.Context // ends when the state machine takes charge again
	cancelAwait context.CancelCauseFunc

	finishOnce sync.Once
	finished   chan struct{} // closed once no listener accepts

	drainOnce sync.Once
	done      chan struct{} // closed once res is set
	res       drainResult
}

// currentDrain returns the drain in progress, starting it if there is none:
// the state machine records it and says how to drain.
func (u *Upgrader) currentDrain() *drainRun {
	u.mu.Lock()
	if d := u.drain; d != nil {
		u.mu.Unlock()
		<-d.planned
		return d
	}
	d := &drainRun{planned: make(chan struct{}), finished: make(chan struct{}), done: make(chan struct{})}
	d.await, d.cancelAwait = context.WithCancelCause(context.Background())
	u.drain = d
	u.mu.Unlock()
	d.plan = drainPlan{final: true}
	reply := make(chan drainPlan, 1)
	if u.send(&drainReq{reply: reply, cancel: d.cancelAwait}) {
		d.plan = <-reply
	}
	close(d.planned)
	return d
}

// StopAccepting stops this generation taking connections and returns when no
// listener accepts any more. After a commit the listeners are paused already:
// the connections the kernel queues go to the new generation. On a final stop
// (this generation was in charge) each listener first takes what the kernel
// has already queued and then closes (listener.Finish), so those connections
// are served rather than reset. Stopping to accept in a generation in charge
// stops it (Stop).
//
// Drain calls it first. Call it yourself, with Retire, before stopping a
// server that closes its listeners and cannot serve again
// (grpc.Server.GracefulStop), so that no queued connection is lost.
// Idempotent.
func (u *Upgrader) StopAccepting(ctx context.Context) {
	d := u.currentDrain()
	u.stopAccepting(ctx, d)
}

func (u *Upgrader) stopAccepting(ctx context.Context, d *drainRun) {
	d.finishOnce.Do(func() {
		defer close(d.finished)
		if !d.plan.final || d.plan.reclaimed {
			return
		}
		if d.plan.childGone != nil {
			select {
			case <-d.plan.childGone:
			case <-ctx.Done():
			}
		}
		if d.plan.adopting != nil {
			t := time.NewTimer(adoptWait)
			select {
			case <-d.plan.adopting:
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
		fctx, cancel := context.WithTimeout(ctx, finishTimeout)
		defer cancel()
		var wg sync.WaitGroup
		for _, ln := range u.Listeners() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// No successor shares the socket: serve what the kernel
				// has queued, then close, rather than reset it.
				_ = ln.Finish(fctx)
			}()
		}
		wg.Wait()
	})
	<-d.finished
}

// Drain ends this generation's connections without losing a request: it
// stops accepting (StopAccepting), lets keep-alive clients finish (their
// next response says Connection: close), closes idle HTTP/1 connections
// after their idle grace, and waits for in-flight requests, streams,
// hijacked and raw connections. It returns when only HTTP/2 connections
// (HTTP/2 over TLS, h2c, gRPC over h2c) are left, or none: those need a
// GOAWAY, which only their server can send, so call http.Server.Shutdown (or
// grpc.Server.GracefulStop) after Drain. When ctx ends first (or
// Options.DrainTimeout passes, if ctx has no deadline) every connection left
// is force-closed and the error wraps ctx's error. The listeners are closed
// when it returns. Draining a generation that is in charge stops it (Stop).
//
// If the successor this generation handed over to dies before the drain
// ends, the drain is called off, this generation takes charge again and
// Drain returns ErrReclaimed: wait for Exit again. Concurrent calls share one
// drain and its result; a call after a completed drain returns its result.
func (u *Upgrader) Drain(ctx context.Context) (listener.DrainStats, error) {
	d := u.currentDrain()
	d.drainOnce.Do(func() {
		d.res = u.runDrain(ctx, d)
		if errors.Is(d.res.err, ErrReclaimed) {
			u.mu.Lock()
			u.drain = nil // the next drain starts afresh
			u.mu.Unlock()
		}
		close(d.done)
	})
	<-d.done
	return d.res.stats, d.res.err
}

func (u *Upgrader) runDrain(ctx context.Context, d *drainRun) drainResult {
	defer d.cancelAwait(nil)
	if d.plan.reclaimed {
		return drainResult{err: ErrReclaimed}
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, u.opts.DrainTimeout)
		defer cancel()
	}
	await, cancel := context.WithCancel(ctx)
	defer cancel()
	context.AfterFunc(d.await, cancel)
	u.stopAccepting(ctx, d)
	lns := u.Listeners()
	if fc := d.plan.handOver; fc != nil {
		for _, ln := range lns {
			key := control.ListenerKey(ln.Addr())
			if slices.Contains(d.plan.keys, key) {
				header := []byte(key)
				ln.HandOver(func(fds []int) error { return fc.Send(header, fds) })
			}
		}
	}
	start := time.Now()
	results := make([]drainResult, len(lns))
	var wg sync.WaitGroup
	for i, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := ln.Drain(ctx)
			if err == nil {
				// Only HTTP/2 connections may be left: their server
				// sends them a GOAWAY.
				if aerr := ln.Await(await, func(c listener.Counts) bool { return c.Open() == c.HTTP2 }); aerr != nil && ctx.Err() != nil {
					err = aerr
				}
			}
			results[i] = drainResult{s, err}
		}()
	}
	wg.Wait()
	var total drainResult
	for _, r := range results {
		total.stats.Conns += r.stats.Conns
		total.stats.ClosedIdle += r.stats.ClosedIdle
		total.stats.ClosedByPeerOrServer += r.stats.ClosedByPeerOrServer
		total.stats.Forced += r.stats.Forced
		total.stats.HandedOver += r.stats.HandedOver
		if r.err != nil && total.err == nil && !errors.Is(r.err, listener.ErrUndrained) {
			total.err = r.err
		}
	}
	total.stats.Duration = time.Since(start)
	reclaimed := make(chan bool, 1)
	if u.send(drainEnd{res: total, reply: reclaimed}) && <-reclaimed {
		return drainResult{stats: total.stats, err: ErrReclaimed}
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return total
}

// removeSocketFiles unlinks the files of unix listeners on a final stop, as
// tableflip does asynchronously: done here, it is done before the process
// can exit.
func (u *Upgrader) removeSocketFiles() {
	for _, ln := range u.Listeners() {
		a, ok := ln.Addr().(*net.UnixAddr)
		if !ok || a.Name == "" || a.Name[0] == '@' || u.sdOwnsPath(a.Name) {
			continue // abstract, or owned by the socket unit
		}
		if fi, err := os.Lstat(a.Name); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(a.Name)
		}
	}
}
