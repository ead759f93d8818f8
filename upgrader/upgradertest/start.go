package upgradertest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// MixedConfig is the project's acceptance mix on the server at addr: 16
// HTTP/1.1 clients, none of which retries: 4 keep-alive clients that check
// the connection before reusing it, 4 that reuse it blindly, 4 that open a
// new connection per request, 2 of slow requests and 2 of 3 s streams, each
// pausing 2 ms between two requests. Change the copy it returns for
// another mix.
func MixedConfig(addr string) Config {
	return Config{
		Addr: addr,
		Workers: map[Kind]int{
			KeepAliveChecked: 4,
			KeepAliveBlind:   4,
			NewConn:          4,
			Slow:             2,
			Stream:           2,
		},
		Pause:      2 * time.Millisecond,
		StreamTime: 3 * time.Second,
	}
}

// Start starts Run with cfg in a goroutine and returns at once. stop ends
// the load (it cancels Run's context, a child of ctx), waits for Run to
// return, and returns its Result. The load also ends when ctx does, but
// its goroutine is only waited for by stop: call stop once the load has
// done its work. stop is idempotent: later calls return the same Result.
func Start(ctx context.Context, cfg Config) (stop func() *Result) {
	ctx, cancel := context.WithCancel(ctx)
	res := make(chan *Result, 1)
	go func() { res <- Run(ctx, cfg) }()
	return sync.OnceValue(func() *Result {
		cancel()
		return <-res
	})
}

// Summary describes r on one line, for logs: the requests, in all and by
// kind (the kinds that made any), the failures by class, the keep-alive
// workers' reconnects (if any), the streams refused unprocessed (if any),
// and how many pids answered.
func (r *Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "requests: %d (", r.Count(-1))
	sep := ""
	for k := range numKinds {
		if n := r.Count(k); n > 0 {
			fmt.Fprintf(&b, "%s%s %d", sep, k, n)
			sep = ", "
		}
	}
	fmt.Fprintf(&b, "); failed %d %v", r.Failed(), r.Failures())
	if n := r.Reconnects(-1); n > 0 {
		fmt.Fprintf(&b, "; keep-alive reconnects %d", n)
	}
	if n := r.Unprocessed(); n > 0 {
		fmt.Fprintf(&b, "; unprocessed %d", n)
	}
	fmt.Fprintf(&b, "; pids %d", len(r.PIDs()))
	return b.String()
}

// Check returns nil if no request of r failed and every kind that cfg
// has workers for made at least one request: a load that did its work and
// lost nothing. Otherwise its error says what failed (the first 20
// failures) and which kinds made no request.
func (r *Result) Check(cfg Config) error {
	var errs []error
	if n := r.Failed(); n > 0 {
		errs = append(errs, fmt.Errorf("upgradertest: %d failed requests: %v\n%s", n, r.Failures(), r.FirstFailures(20)))
	}
	for k := range numKinds {
		if cfg.Workers[k] > 0 && r.Count(k) == 0 {
			errs = append(errs, fmt.Errorf("upgradertest: no %s request was made", k))
		}
	}
	return errors.Join(errs...)
}
