package upgradertest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is a kind of client.
type Kind int

// The kinds of client.
const (
	// KeepAliveChecked reuses a keep-alive connection after checking that
	// the server has not closed it.
	KeepAliveChecked Kind = iota
	// KeepAliveBlind reuses a keep-alive connection without checking.
	KeepAliveBlind
	// NewConn opens a new connection for each request.
	NewConn
	// Slow sends requests that take Config.SlowTime on keep-alive
	// connections (checked).
	Slow
	// Stream reads streamed responses of Config.StreamTime on new
	// connections; a stream that does not end with "done" is truncated.
	Stream
	// H2TLS opens Config.H2Streams concurrent streams at a time on one
	// HTTP/2 connection over TLS (ALPN "h2") to Config.TLSAddr: GET /pid,
	// and /slow or /stream for Config.H2Slow and Config.H2Stream of them.
	// A connection that got a GOAWAY, or that ended, takes no new stream
	// (checked, as KeepAliveChecked checks): the next ones go on a new
	// connection.
	H2TLS
	// H2C is H2TLS over cleartext TCP to Config.Addr, with prior knowledge
	// (h2c, no upgrade from HTTP/1.1).
	H2C
	// H2Idle makes a burst of a few GET /pid on an HTTP/2 connection, one
	// at a time, then leaves the connection idle for about Config.IdleTime,
	// then reuses it if it got no GOAWAY, or opens a new one if it did. It
	// does not check whether the connection ended otherwise: a server that
	// closes an idle connection without a GOAWAY fails the next request
	// (NoGoAway). It is h2c to Config.Addr, or TLS to Config.TLSAddr with
	// Config.IdleTLS.
	H2Idle
	// GRPCUnary calls a unary method that answers the pid. Its client comes
	// from Config.Clients (see package grpcload).
	GRPCUnary
	// GRPCStream calls a server-streaming method that sends messages for
	// Config.StreamTime, then a last message "done"; a stream without it
	// is truncated. Its client comes from Config.Clients (see package
	// grpcload).
	GRPCStream
	numKinds
)

var kindNames = [...]string{"keepalive-checked", "keepalive-blind", "new-conn", "slow", "stream",
	"h2-tls", "h2c", "h2-idle", "grpc-unary", "grpc-stream"}

func (k Kind) String() string {
	if k >= 0 && k < numKinds {
		return kindNames[k]
	}
	return "unknown"
}

// Class is a class of result: OK, a failure, or Unprocessed.
type Class int

// Classes.
const (
	OK Class = iota
	// Refused: the connection was refused.
	Refused
	// Reset: the connection was reset, or the server reset the HTTP/2
	// stream (RST_STREAM with a code other than REFUSED_STREAM).
	Reset
	// EOFReused: the server closed a reused connection before any byte of
	// the response.
	EOFReused
	// EOF: the connection ended early in another way.
	EOF
	// Timeout: no complete response within Config.Timeout (gRPC: the
	// status DeadlineExceeded).
	Timeout
	// Non2xx: a response with a status other than 200 (gRPC: a status
	// other than OK that no other class names).
	Non2xx
	// Truncated: a stream that did not end with its "done" line (or, for
	// gRPC, its "done" message).
	Truncated
	// Other: any other error.
	Other
	// Unprocessed is not a failure: an HTTP/2 stream that the server
	// refused before processing it, either with REFUSED_STREAM or because
	// its id is above the last stream id of a GOAWAY. RFC 9113 (§6.8,
	// §8.7) makes such a request safe to retry; these clients do not
	// retry, they count it.
	Unprocessed
	// NoGoAway: an HTTP/2 connection ended (EOF, reset) without a GOAWAY
	// while the stream was open, or was reused after it had so ended.
	NoGoAway
	// Unavailable: an RPC failed with the gRPC status Unavailable (the
	// connection was refused, reset or closed).
	Unavailable
	numClasses
)

var classNames = [...]string{"ok", "refused", "reset", "eof-reused", "eof", "timeout", "non-2xx", "truncated", "other",
	"unprocessed", "no-goaway", "unavailable"}

func (c Class) String() string {
	if c >= 0 && c < numClasses {
		return classNames[c]
	}
	return "unknown"
}

// Failed reports whether c is a failure: any class but OK and Unprocessed.
func (c Class) Failed() bool { return c != OK && c != Unprocessed }

// Op is what a request asks for.
type Op int

// Ops.
const (
	// OpPID asks for the pid: GET /pid, or the unary gRPC method.
	OpPID Op = iota
	// OpSlow asks for a response that takes Config.SlowTime: GET /slow.
	OpSlow
	// OpStream asks for a stream of Config.StreamTime that ends with
	// "done": GET /stream, or the streaming gRPC method.
	OpStream
)

func (o Op) String() string {
	switch o {
	case OpPID:
		return "pid"
	case OpSlow:
		return "slow"
	case OpStream:
		return "stream"
	}
	return "unknown"
}

// Config describes a load. The zero value of each field but Addr and
// Workers is its default.
type Config struct {
	// Network and Addr of the server: "tcp" (default) or "unix". The
	// HTTP/1.1 clients and the h2c clients (H2C, and H2Idle without
	// IdleTLS) connect there.
	Network, Addr string
	// Workers per kind.
	Workers map[Kind]int
	// Pause between two requests of one worker (rate limit); for H2TLS and
	// H2C, between two requests of one stream. Default 5ms.
	Pause time.Duration
	// SlowTime of Slow requests. Default 200ms.
	SlowTime time.Duration
	// StreamTime of Stream responses. Default 3s.
	StreamTime time.Duration
	// Timeout of one request. Default 15s (streams: StreamTime + 15s).
	Timeout time.Duration
	// MaxRequests per worker, a bound on the loop. Default 1,000,000.
	MaxRequests int

	// TLS configures the TLS clients (H2TLS, and H2Idle with IdleTLS):
	// put the pool of WriteCert in its RootCAs. They set NextProtos to
	// "h2" in a copy. Default: an empty tls.Config (the system's roots).
	TLS *tls.Config
	// TLSAddr is the address of the server's TLS listener, on Network.
	// Default Addr.
	TLSAddr string
	// H2Streams is the number of concurrent streams of each H2TLS and H2C
	// worker. Keep it within the server's SETTINGS_MAX_CONCURRENT_STREAMS
	// (net/http allows at least 100): these clients do not wait for a free
	// stream, and a server resets the extra ones (net/http: PROTOCOL_ERROR,
	// a Reset failure). Default 8.
	H2Streams int
	// H2Slow and H2Stream are how many of the H2Streams streams of each
	// H2TLS and H2C worker ask for GET /slow (SlowTime) and GET /stream
	// (StreamTime) instead of GET /pid. Default 0.
	H2Slow, H2Stream int
	// IdleTime is how long an H2Idle connection stays idle between two
	// bursts, give or take half of it at random so that the workers spread
	// out. Default 1s.
	IdleTime time.Duration
	// IdleTLS makes the H2Idle workers use TLS to TLSAddr instead of h2c to
	// Addr.
	IdleTLS bool

	// Requests, if set, replace GET /pid for a server that does not
	// answer as Handler does: the workers of KeepAliveChecked,
	// KeepAliveBlind and NewConn, and the GET /pid streams of H2TLS, H2C
	// and H2Idle, send them in turn. A response to one of them is OK when
	// its status is 2xx and its body arrived whole; the body is not
	// checked otherwise, and Sample.PID stays empty. Default: GET /pid.
	Requests []Request
	// SlowRequest, if set, replaces GET /slow?ms=SlowTime (Slow, and the
	// H2Slow streams), checked as Requests are; SlowTime is then unused.
	SlowRequest *Request
	// StreamRequest, if set, replaces GET /stream?s=StreamTime (Stream,
	// and the H2Stream streams). It is OK when its status is 2xx and its
	// body ended as its framing says (a chunked body cut short is
	// Truncated); no "done" line is looked for. StreamTime then only
	// bounds how long it may take (Timeout + StreamTime).
	StreamRequest *Request
	// Host is sent as the Host header (HTTP/1.1) and :authority (HTTP/2).
	// Default "load".
	Host string

	// OnSample, if set, is called with each sample as soon as its request
	// has ended, from the worker's goroutine (so from many goroutines at
	// once): it must be safe for concurrent use and must not block. It
	// lets a program report progress while the load runs; Run's Result
	// still holds every sample. Default none.
	OnSample func(Sample)

	// Clients makes the client of each worker of a kind that this package
	// has no client for: GRPCUnary and GRPCStream, which package grpcload
	// provides (grpcload.Clients returns this map), so that a program that
	// does not ask for gRPC load does not link gRPC. Run calls the
	// function once per worker, with the Config of the run (defaults
	// filled in), and closes the Client when the worker ends. A worker of
	// a kind with no client makes one request, which fails (Other).
	Clients map[Kind]func(Config) Client
}

// A Client makes the requests of one worker of a kind that Config.Clients
// provides. Run calls its methods from one goroutine.
type Client interface {
	// Request makes one request, never retried, and returns its class,
	// the pid that answered (for OK), and the error for other classes.
	// It returns within the Config's Timeout (streams: StreamTime +
	// Timeout).
	Request() (Class, string, error)
	// Close releases the client's connections.
	Close()
}

// Sample is one request.
type Sample struct {
	Kind    Kind
	Op      Op // what the request asked for
	Start   time.Time
	Latency time.Duration
	Class   Class
	PID     string // the pid that answered, from the body
	Err     string // the error, for failures and Unprocessed
	// Conn is the client's address of the connection the request went on
	// ("127.0.0.1:40312"), so that a program that learns which process
	// holds the server's end of a connection knows which one answered;
	// empty if no connection was made, and for the gRPC kinds.
	Conn string
	// Reconnect: a keep-alive worker (KeepAliveChecked, KeepAliveBlind,
	// Slow) had to dial again for this request, its previous connection
	// having been closed (by the server, or by the worker after an error
	// or a "Connection: close"). A worker's first dial is not one.
	Reconnect bool
}

// Result of a run.
type Result struct {
	Samples []Sample
	// H2 counts the connections of the HTTP/2 clients (H2TLS, H2C,
	// H2Idle).
	H2 H2Conns
}

// H2Conns counts HTTP/2 connections by how they ended. A connection that
// the client closed without having received a GOAWAY counts in neither
// GoAway nor NoGoAway, so Opened >= GoAway + NoGoAway.
type H2Conns struct {
	// Opened: connections set up (TCP, TLS, connection preface sent).
	Opened int
	// GoAway: connections that received a GOAWAY before they ended.
	GoAway int
	// NoGoAway: connections that the server ended (EOF, reset, protocol
	// error) without a GOAWAY, whether a stream was open or not.
	NoGoAway int
}

// Run puts the load on the server until ctx ends, then waits for every
// worker to finish its current request and returns all samples. Requests
// in flight when ctx ends still complete (they are not counted as failures
// because of ctx). Run starts a goroutine per worker (and per stream of
// the H2TLS and H2C workers) and returns only when all have ended and
// every connection is closed.
func Run(ctx context.Context, cfg Config) *Result {
	r := &run{cfg: cfg.withDefaults()}
	var wg sync.WaitGroup
	for k := range numKinds {
		for range r.cfg.Workers[k] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.work(ctx, k)
			}()
		}
	}
	wg.Wait()
	res := &Result{Samples: r.samples, H2: H2Conns{
		Opened:   int(r.h2.opened.Load()),
		GoAway:   int(r.h2.goAway.Load()),
		NoGoAway: int(r.h2.noGoAway.Load()),
	}}
	slices.SortFunc(res.Samples, func(a, b Sample) int { return a.Start.Compare(b.Start) })
	return res
}

func (c Config) withDefaults() Config {
	if c.Network == "" {
		c.Network = "tcp"
	}
	if c.Pause <= 0 {
		c.Pause = 5 * time.Millisecond
	}
	if c.SlowTime <= 0 {
		c.SlowTime = 200 * time.Millisecond
	}
	if c.StreamTime <= 0 {
		c.StreamTime = 3 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 15 * time.Second
	}
	if c.MaxRequests <= 0 {
		c.MaxRequests = 1_000_000
	}
	if c.TLS == nil {
		c.TLS = &tls.Config{}
	}
	if c.TLSAddr == "" {
		c.TLSAddr = c.Addr
	}
	if c.H2Streams <= 0 {
		c.H2Streams = 8
	}
	if c.IdleTime <= 0 {
		c.IdleTime = time.Second
	}
	if c.Host == "" {
		c.Host = "load"
	}
	return c
}

// run is the state of one Run shared by its workers.
type run struct {
	cfg     Config
	mu      sync.Mutex
	samples []Sample
	h2      h2Stats
}

// h2Stats counts the HTTP/2 connections of a run.
type h2Stats struct {
	opened, goAway, noGoAway atomic.Int64
}

// work runs one worker of kind k until ctx ends or it has made
// cfg.MaxRequests requests.
func (r *run) work(ctx context.Context, k Kind) {
	switch k {
	case H2TLS, H2C:
		r.h2Worker(ctx, k)
	case H2Idle:
		r.idleWorker(ctx)
	case GRPCUnary, GRPCStream:
		newClient := r.cfg.Clients[k]
		if newClient == nil {
			r.add(r.record(k, opOf(k), func() (Class, string, error) {
				return Other, "", fmt.Errorf("upgradertest: no client for kind %s in Config.Clients (see package grpcload)", k)
			}, nil))
			return
		}
		c := newClient(r.cfg)
		defer c.Close()
		r.loop(ctx, k, opOf(k), c.Request, nil)
	default:
		w := &h1Worker{cfg: r.cfg, kind: k}
		defer w.close()
		for i := 0; i < r.cfg.MaxRequests && ctx.Err() == nil; i++ {
			s := r.record(k, opOf(k), w.do, &w.local)
			s.Reconnect = w.redialled
			r.add(s)
			r.pause(ctx, r.cfg.Pause)
		}
	}
}

// loop makes requests with do until ctx ends or cfg.MaxRequests are made,
// pausing between two. conn is as for record.
func (r *run) loop(ctx context.Context, k Kind, op Op, do func() (Class, string, error), conn *string) {
	for i := 0; i < r.cfg.MaxRequests && ctx.Err() == nil; i++ {
		r.add(r.record(k, op, do, conn))
		r.pause(ctx, r.cfg.Pause)
	}
}

// pause waits for d or until ctx ends.
func (r *run) pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// record times one request made with do and returns its sample. conn, if
// not nil, is where do leaves the client's address of the connection it
// used (Sample.Conn); do sets it only when it has a connection.
func (r *run) record(k Kind, op Op, do func() (Class, string, error), conn *string) Sample {
	s := Sample{Kind: k, Op: op, Start: time.Now()}
	if conn != nil {
		*conn = ""
	}
	class, pid, err := do()
	s.Latency = time.Since(s.Start)
	s.Class, s.PID = class, pid
	if conn != nil {
		s.Conn = *conn
	}
	if err != nil {
		s.Err = err.Error()
	}
	return s
}

// add adds a sample to the result.
func (r *run) add(s Sample) {
	r.mu.Lock()
	r.samples = append(r.samples, s)
	r.mu.Unlock()
	if r.cfg.OnSample != nil {
		r.cfg.OnSample(s)
	}
}

// opOf is what the requests of kind k ask for (H2TLS and H2C: most of
// them).
func opOf(k Kind) Op {
	switch k {
	case Slow:
		return OpSlow
	case Stream, GRPCStream:
		return OpStream
	}
	return OpPID
}

// path is the path of a GET for op.
func (c Config) path(op Op) string {
	switch op {
	case OpSlow:
		return fmt.Sprintf("/slow?ms=%d", c.SlowTime.Milliseconds())
	case OpStream:
		return fmt.Sprintf("/stream?s=%g", c.StreamTime.Seconds())
	}
	return "/pid"
}

// checkBody checks the body of a 200 response to a request for op and
// finds the pid in it.
func checkBody(op Op, body string) (Class, string, error) {
	switch op {
	case OpStream:
		if !strings.HasSuffix(body, "done\n") {
			return Truncated, "", errors.New("stream ended without done")
		}
		return OK, pidOf(body), nil
	case OpSlow:
		return OK, pidOf(body), nil
	}
	return OK, strings.TrimSpace(body), nil
}

// pidOf finds "pid N" in a body.
func pidOf(text string) string {
	f := strings.Fields(text)
	for i := len(f) - 2; i >= 0; i-- {
		if f[i] == "pid" {
			return f[i+1]
		}
	}
	return ""
}

// Failures counts the failed samples by class (Unprocessed is not a
// failure: see Unprocessed).
func (r *Result) Failures() map[Class]int {
	m := map[Class]int{}
	for _, s := range r.Samples {
		if s.Class.Failed() {
			m[s.Class]++
		}
	}
	return m
}

// Failed is the number of failed samples (Unprocessed is not a failure).
func (r *Result) Failed() int {
	n := 0
	for _, s := range r.Samples {
		if s.Class.Failed() {
			n++
		}
	}
	return n
}

// Unprocessed is the number of HTTP/2 streams that the server refused
// unprocessed (class Unprocessed): not failures, but requests that a
// client must send again.
func (r *Result) Unprocessed() int {
	n := 0
	for _, s := range r.Samples {
		if s.Class == Unprocessed {
			n++
		}
	}
	return n
}

// Count is the number of samples of kind k (all kinds if k < 0).
func (r *Result) Count(k Kind) int {
	n := 0
	for _, s := range r.Samples {
		if k < 0 || s.Kind == k {
			n++
		}
	}
	return n
}

// Reconnects counts the requests for which a keep-alive worker of kind k
// (all keep-alive kinds if k < 0) had to dial again (Sample.Reconnect).
func (r *Result) Reconnects(k Kind) int {
	n := 0
	for _, s := range r.Samples {
		if s.Reconnect && (k < 0 || s.Kind == k) {
			n++
		}
	}
	return n
}

// PIDs returns how many requests each pid answered.
func (r *Result) PIDs() map[string]int {
	m := map[string]int{}
	for _, s := range r.Samples {
		if s.Class == OK {
			m[s.PID]++
		}
	}
	return m
}

// FirstFailures describes up to n failures, for test messages.
func (r *Result) FirstFailures(n int) string {
	var b strings.Builder
	for _, s := range r.Samples {
		if !s.Class.Failed() {
			continue
		}
		if n == 0 {
			break
		}
		n--
		fmt.Fprintf(&b, "%s %s %s after %s: %s\n", s.Start.Format("15:04:05.000000"), s.Kind, s.Class, s.Latency, s.Err)
	}
	return b.String()
}

// Percentile returns the p-th percentile (0..100) of the latencies of the
// samples for which keep returns true (all if keep is nil). Streams (Op
// OpStream) are left out: their latency is their length.
func (r *Result) Percentile(p float64, keep func(Sample) bool) time.Duration {
	var l []time.Duration
	for _, s := range r.Samples {
		if s.Op == OpStream || (keep != nil && !keep(s)) {
			continue
		}
		l = append(l, s.Latency)
	}
	if len(l) == 0 {
		return 0
	}
	slices.Sort(l)
	i := int(float64(len(l)-1) * p / 100)
	return l[i]
}
