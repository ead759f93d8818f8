// Package upgradertest is a load generator for checking that a server loses
// nothing while it upgrades: the project uses it in its tests, the demo and the
// benchmarks. Its clients speak raw HTTP/1.1 over net.Conn and never retry,
// so every request that a server refuses, resets or drops is counted: Go's
// http.Transport would silently retry some of them.
//
// Worker kinds: keep-alive clients that check whether the server closed an
// idle connection before they reuse it (as curl does) and ones that reuse it
// blindly; clients that open a new connection per request; slow requests;
// long streamed responses that must end with a "done" line. Every worker is
// rate-limited and stops when its context ends.
//
// The server under load must answer GET /pid with its pid, GET /slow?ms=N
// after N ms with a body containing "pid <pid>", and GET /stream?s=N with
// lines for N seconds ending in a line "done", as examples/httpserver does.
package upgradertest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
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
	numKinds
)

var kindNames = [...]string{"keepalive-checked", "keepalive-blind", "new-conn", "slow", "stream"}

func (k Kind) String() string {
	if k >= 0 && k < numKinds {
		return kindNames[k]
	}
	return "unknown"
}

// Class is a class of failure.
type Class int

// Failure classes.
const (
	OK Class = iota
	// Refused: the connection was refused.
	Refused
	// Reset: the connection was reset.
	Reset
	// EOFReused: the server closed a reused connection before any byte of
	// the response.
	EOFReused
	// EOF: the connection ended early in another way.
	EOF
	// Timeout: no complete response within Config.Timeout.
	Timeout
	// Non2xx: a response with a status other than 200.
	Non2xx
	// Truncated: a stream that did not end with its "done" line.
	Truncated
	// Other: any other error.
	Other
	numClasses
)

var classNames = [...]string{"ok", "refused", "reset", "eof-reused", "eof", "timeout", "non-2xx", "truncated", "other"}

func (c Class) String() string {
	if c >= 0 && c < numClasses {
		return classNames[c]
	}
	return "unknown"
}

// Config describes a load.
type Config struct {
	// Network and Addr of the server: "tcp" (default) or "unix".
	Network, Addr string
	// Workers per kind.
	Workers map[Kind]int
	// Pause between two requests of one worker (rate limit). Default 5ms.
	Pause time.Duration
	// SlowTime of Slow requests. Default 200ms.
	SlowTime time.Duration
	// StreamTime of Stream responses. Default 3s.
	StreamTime time.Duration
	// Timeout of one request. Default 15s (streams: StreamTime + 15s).
	Timeout time.Duration
	// MaxRequests per worker, a bound on the loop. Default 1,000,000.
	MaxRequests int
}

// Sample is one request.
type Sample struct {
	Kind    Kind
	Start   time.Time
	Latency time.Duration
	Class   Class
	PID     string // the pid that answered, from the body
	Err     string // the error, for failures
}

// Result of a run.
type Result struct {
	Samples []Sample
}

// Run puts the load on the server until ctx ends, then waits for every
// worker to finish its current request and returns all samples. Requests
// in flight when ctx ends still complete (they are not counted as failures
// because of ctx).
func Run(ctx context.Context, cfg Config) *Result {
	cfg = cfg.withDefaults()
	var (
		mu  sync.Mutex
		res Result
		wg  sync.WaitGroup
	)
	for k := range numKinds {
		for range cfg.Workers[k] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w := &worker{cfg: cfg, kind: k}
				defer w.close()
				for i := 0; i < cfg.MaxRequests && ctx.Err() == nil; i++ {
					s := w.request()
					mu.Lock()
					res.Samples = append(res.Samples, s)
					mu.Unlock()
					select {
					case <-ctx.Done():
					case <-time.After(cfg.Pause):
					}
				}
			}()
		}
	}
	wg.Wait()
	slices.SortFunc(res.Samples, func(a, b Sample) int { return a.Start.Compare(b.Start) })
	return &res
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
	return c
}

type worker struct {
	cfg  Config
	kind Kind
	conn net.Conn
	br   *bufio.Reader
}

func (w *worker) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

func (w *worker) path() string {
	switch w.kind {
	case Slow:
		return fmt.Sprintf("/slow?ms=%d", w.cfg.SlowTime.Milliseconds())
	case Stream:
		return fmt.Sprintf("/stream?s=%g", w.cfg.StreamTime.Seconds())
	}
	return "/pid"
}

func (w *worker) request() Sample {
	s := Sample{Kind: w.kind, Start: time.Now()}
	class, pid, err := w.do()
	s.Latency = time.Since(s.Start)
	s.Class, s.PID = class, pid
	if err != nil {
		s.Err = err.Error()
	}
	return s
}

func (w *worker) do() (Class, string, error) {
	reused := false
	switch w.kind {
	case NewConn, Stream:
		w.close()
	case KeepAliveChecked, Slow:
		if w.conn != nil && closedByPeer(w.conn) {
			w.close()
		}
	}
	if w.conn != nil {
		reused = true
	} else {
		c, err := net.DialTimeout(w.cfg.Network, w.cfg.Addr, w.cfg.Timeout)
		if err != nil {
			return classify(err, false), "", err
		}
		w.conn, w.br = c, bufio.NewReader(c)
	}
	timeout := w.cfg.Timeout
	if w.kind == Stream {
		timeout += w.cfg.StreamTime
	}
	_ = w.conn.SetDeadline(time.Now().Add(timeout))
	req := "GET " + w.path() + " HTTP/1.1\r\nHost: load\r\n"
	if w.kind == NewConn || w.kind == Stream {
		req += "Connection: close\r\n"
	}
	if _, err := io.WriteString(w.conn, req+"\r\n"); err != nil {
		w.close()
		return classify(err, reused), "", err
	}
	resp, err := http.ReadResponse(w.br, nil)
	if err != nil {
		w.close()
		return classify(err, reused), "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		w.close()
		if w.kind == Stream {
			return Truncated, "", err
		}
		return classify(err, false), "", err
	}
	if resp.Close {
		w.close()
	} else {
		_ = w.conn.SetDeadline(time.Time{})
	}
	if resp.StatusCode != http.StatusOK {
		return Non2xx, "", fmt.Errorf("status %s", resp.Status)
	}
	text := string(body)
	switch w.kind {
	case Stream:
		if !strings.HasSuffix(text, "done\n") {
			return Truncated, "", errors.New("stream ended without done")
		}
		return OK, pidOf(text), nil
	case Slow:
		return OK, pidOf(text), nil
	}
	return OK, strings.TrimSpace(text), nil
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

// closedByPeer reports whether the server has closed c: a read that returns
// at once with EOF (or an error) rather than timing out.
func closedByPeer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
	var b [1]byte
	_, err := c.Read(b[:])
	_ = c.SetReadDeadline(time.Time{})
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true // EOF, reset, or unexpected data: do not reuse
}

func classify(err error, reused bool) Class {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return Reset
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return Timeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		if reused {
			return EOFReused
		}
		return EOF
	}
	return Other
}

// Failures counts the failed samples by class.
func (r *Result) Failures() map[Class]int {
	m := map[Class]int{}
	for _, s := range r.Samples {
		if s.Class != OK {
			m[s.Class]++
		}
	}
	return m
}

// Failed is the number of failed samples.
func (r *Result) Failed() int {
	n := 0
	for _, s := range r.Samples {
		if s.Class != OK {
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
		if s.Class == OK {
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
// samples for which keep returns true (all if keep is nil). Streams are
// left out: their latency is their length.
func (r *Result) Percentile(p float64, keep func(Sample) bool) time.Duration {
	var l []time.Duration
	for _, s := range r.Samples {
		if s.Kind == Stream || (keep != nil && !keep(s)) {
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
