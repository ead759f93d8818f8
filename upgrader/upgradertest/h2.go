package upgradertest

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// idleBurst is how many requests an H2Idle worker makes between two idle
// periods.
const idleBurst = 3

// h2Worker runs one H2TLS or H2C worker: cfg.H2Streams goroutines, each a
// loop of requests on the worker's current connection, which is replaced
// once it got a GOAWAY or ended. The worker's requests together stop at
// cfg.MaxRequests.
func (r *run) h2Worker(ctx context.Context, k Kind) {
	p := &h2Pool{run: r, tls: k == H2TLS, users: map[*h2conn]int{}}
	defer p.close()
	var left atomic.Int64
	left.Store(int64(r.cfg.MaxRequests))
	var wg sync.WaitGroup
	for i := range r.cfg.H2Streams {
		op := OpPID
		switch {
		case i < r.cfg.H2Stream:
			op = OpStream
		case i < r.cfg.H2Stream+r.cfg.H2Slow:
			op = OpSlow
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local string
			for n := i; ctx.Err() == nil && left.Add(-1) >= 0; n++ {
				r.add(r.record(k, op, func() (Class, string, error) { return p.request(op, n, &local) }, &local))
				r.pause(ctx, r.cfg.Pause)
			}
		}()
	}
	wg.Wait()
}

// h2Pool holds the connections of one H2TLS or H2C worker: the current one,
// which takes the new streams, and older ones that still have streams open.
type h2Pool struct {
	run   *run
	tls   bool
	mu    sync.Mutex
	cur   *h2conn
	users map[*h2conn]int // open streams by connection
}

// request makes the n-th request for op of one stream of the worker, and
// sets *local to the client's address of the connection it used.
func (p *h2Pool) request(op Op, n int, local *string) (Class, string, error) {
	c, err := p.acquire()
	if err != nil {
		return classify(err, false), "", err
	}
	defer p.release(c)
	*local = c.nc.LocalAddr().String()
	return c.get(p.run.cfg, op, n)
}

// acquire returns the connection for a new stream: the current one, unless
// it got a GOAWAY or ended (checked, as KeepAliveChecked checks), in which
// case a new one.
func (p *h2Pool) acquire() (*h2conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil {
		if goAway, ended := p.cur.state(); goAway || ended {
			old := p.cur
			p.cur = nil
			if p.users[old] == 0 {
				delete(p.users, old)
				old.close()
			}
		}
	}
	if p.cur == nil {
		c, err := dialH2(p.run.cfg, p.tls, &p.run.h2)
		if err != nil {
			return nil, err
		}
		p.cur = c
	}
	p.users[p.cur]++
	return p.cur, nil
}

// release ends the use of c by a stream, and closes c if it is no longer
// the current connection and no stream uses it.
func (p *h2Pool) release(c *h2conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users[c]--
	if p.users[c] == 0 && c != p.cur {
		delete(p.users, c)
		c.close()
	}
}

// close closes every connection; no stream may be open.
func (p *h2Pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.users {
		if c != p.cur {
			c.close()
		}
	}
	if p.cur != nil {
		p.cur.close()
	}
}

// idleWorker runs one H2Idle worker: bursts of idleBurst requests on one
// connection, cfg.IdleTime (with jitter) apart. It opens a new connection
// only after a GOAWAY, or after a request failed on a connection that had
// ended: it does not check, so a server that closes an idle connection
// without a GOAWAY fails its next request (NoGoAway).
func (r *run) idleWorker(ctx context.Context) {
	var c *h2conn
	var local string
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for i := 0; i < r.cfg.MaxRequests; i++ {
		if i > 0 {
			d := r.cfg.Pause
			if i%idleBurst == 0 {
				d = r.cfg.IdleTime/2 + rand.N(r.cfg.IdleTime)
			}
			r.pause(ctx, d)
		}
		if ctx.Err() != nil {
			return
		}
		if c != nil {
			if goAway, _ := c.state(); goAway {
				c.close()
				c = nil
			}
		}
		r.add(r.record(H2Idle, OpPID, func() (Class, string, error) {
			if c == nil {
				nc, err := dialH2(r.cfg, r.cfg.IdleTLS, &r.h2)
				if err != nil {
					return classify(err, false), "", err
				}
				c = nc
			}
			local = c.nc.LocalAddr().String()
			class, pid, err := c.get(r.cfg, OpPID, i)
			if _, ended := c.state(); ended && class.Failed() {
				c.close()
				c = nil
			}
			return class, pid, err
		}, &local))
	}
}

// timeout bounds a request for op.
func (c Config) timeout(op Op) time.Duration {
	if op == OpStream {
		return c.Timeout + c.StreamTime
	}
	return c.Timeout
}
