package upgradertest_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server serves the endpoints the load expects; broken makes every /pid
// answer a hijacked connection closed without a response.
func server(t *testing.T, broken bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/pid", func(w http.ResponseWriter, r *http.Request) {
		if broken {
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
			return
		}
		fmt.Fprintln(w, "42")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		fmt.Fprintln(w, "slow pid 42")
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		for i := range 3 {
			fmt.Fprintf(w, "line %d pid 42\n", i)
			w.(http.Flusher).Flush()
		}
		fmt.Fprintln(w, "done")
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestLoadCountsEveryKind(t *testing.T) {
	addr := server(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	res := upgradertest.Run(ctx, upgradertest.Config{
		Addr: addr,
		Workers: map[upgradertest.Kind]int{
			upgradertest.KeepAliveChecked: 1, upgradertest.KeepAliveBlind: 1,
			upgradertest.NewConn: 1, upgradertest.Slow: 1, upgradertest.Stream: 1,
		},
		SlowTime: 20 * time.Millisecond, StreamTime: 10 * time.Millisecond, MaxRequests: 50,
	})
	if res.Failed() != 0 {
		t.Fatalf("%d failed: %s", res.Failed(), res.FirstFailures(5))
	}
	for k := upgradertest.KeepAliveChecked; k <= upgradertest.Stream; k++ {
		if res.Count(k) == 0 {
			t.Errorf("no %s request", k)
		}
	}
	if got := res.PIDs()["42"]; got != res.Count(-1) {
		t.Errorf("pid 42 answered %d of %d", got, res.Count(-1))
	}
	if p := res.Percentile(50, nil); p <= 0 {
		t.Errorf("p50 %v", p)
	}
	if n := res.Reconnects(-1); n != 0 {
		t.Errorf("%d reconnects to a server that keeps connections open", n)
	}
}

// A keep-alive worker whose connection the server closes after every
// response dials again for every request but its first: a reconnect each;
// new-connection workers never count one.
func TestLoadCountsReconnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		fmt.Fprintln(w, "42")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	res := upgradertest.Run(context.Background(), upgradertest.Config{
		Addr: ln.Addr().String(),
		Workers: map[upgradertest.Kind]int{
			upgradertest.KeepAliveChecked: 1, upgradertest.KeepAliveBlind: 1, upgradertest.NewConn: 1,
		},
		MaxRequests: 10,
	})
	if res.Failed() != 0 {
		t.Fatalf("%d failed: %s", res.Failed(), res.FirstFailures(5))
	}
	if got := res.Reconnects(upgradertest.KeepAliveChecked); got != 9 {
		t.Errorf("checked: %d reconnects, want 9", got)
	}
	if got := res.Reconnects(upgradertest.KeepAliveBlind); got != 9 {
		t.Errorf("blind: %d reconnects, want 9", got)
	}
	if got := res.Reconnects(upgradertest.NewConn); got != 0 {
		t.Errorf("new-conn: %d reconnects, want 0", got)
	}
	if !strings.Contains(res.Summary(), "keep-alive reconnects 18") {
		t.Errorf("summary %q", res.Summary())
	}
}

// TestOnSample: OnSample sees every sample of the Result, as it comes.
func TestOnSample(t *testing.T) {
	addr := server(t, false)
	var mu sync.Mutex
	seen := 0
	res := upgradertest.Run(context.Background(), upgradertest.Config{
		Addr:        addr,
		Workers:     map[upgradertest.Kind]int{upgradertest.KeepAliveChecked: 2, upgradertest.NewConn: 2},
		MaxRequests: 10,
		OnSample: func(s upgradertest.Sample) {
			mu.Lock()
			seen++
			mu.Unlock()
		},
	})
	if seen != 40 || res.Count(-1) != 40 {
		t.Errorf("OnSample saw %d samples, the Result has %d, want 40", seen, res.Count(-1))
	}
	// Each sample names its connection: a keep-alive worker reuses one,
	// a new-connection worker does not.
	conns := map[upgradertest.Kind]map[string]bool{upgradertest.KeepAliveChecked: {}, upgradertest.NewConn: {}}
	for _, s := range res.Samples {
		if !strings.HasPrefix(s.Conn, "127.0.0.1:") {
			t.Fatalf("sample %+v: Conn %q", s, s.Conn)
		}
		conns[s.Kind][s.Conn] = true
	}
	if n := len(conns[upgradertest.KeepAliveChecked]); n != 2 {
		t.Errorf("2 keep-alive workers used %d connections", n)
	}
	if n := len(conns[upgradertest.NewConn]); n < 10 {
		t.Errorf("2 new-connection workers used %d connections for 20 requests", n)
	}
}

func TestLoadCountsFailures(t *testing.T) {
	addr := server(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res := upgradertest.Run(ctx, upgradertest.Config{
		Addr:        addr,
		Workers:     map[upgradertest.Kind]int{upgradertest.NewConn: 1},
		MaxRequests: 5,
	})
	if res.Failed() != res.Count(-1) || res.Failed() == 0 {
		t.Fatalf("%d of %d failed, want all", res.Failed(), res.Count(-1))
	}
	if f := res.Failures(); f[upgradertest.EOF] != res.Failed() {
		t.Errorf("failures %v, want all eof", f)
	}

	// Nothing listens: refused.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	res = upgradertest.Run(context.Background(), upgradertest.Config{
		Addr: dead, Workers: map[upgradertest.Kind]int{upgradertest.NewConn: 1}, MaxRequests: 2,
	})
	if f := res.Failures(); f[upgradertest.Refused] != 2 {
		t.Errorf("failures %v, want 2 refused", f)
	}
}

// TestStartAndCheck: Start runs the load until stop, which is idempotent;
// Summary names the kinds that made requests; Check passes a load that did
// its work and lost nothing, and names what failed or made no request.
func TestStartAndCheck(t *testing.T) {
	cfg := upgradertest.MixedConfig(server(t, false))
	cfg.SlowTime, cfg.StreamTime = 20*time.Millisecond, 10*time.Millisecond
	stop := upgradertest.Start(context.Background(), cfg)
	time.Sleep(200 * time.Millisecond) // a load, not a synchronisation
	res := stop()
	if res != stop() {
		t.Error("a second stop returned another Result")
	}
	if err := res.Check(cfg); err != nil {
		t.Fatal(err)
	}
	for k := upgradertest.KeepAliveChecked; k <= upgradertest.Stream; k++ {
		if res.Count(k) == 0 {
			t.Errorf("no %s request", k)
		}
	}
	sum := res.Summary()
	for _, want := range []string{fmt.Sprintf("requests: %d (", res.Count(-1)), "keepalive-checked ", "stream ", "; failed 0 map[]; pids 1"} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary %q does not contain %q", sum, want)
		}
	}
	if strings.Contains(sum, "h2c") || strings.Contains(sum, "unprocessed") {
		t.Errorf("summary %q names what made no request", sum)
	}

	// A kind that made no request, and failed requests.
	cfg.Workers[upgradertest.H2C] = 1
	if err := res.Check(cfg); err == nil || !strings.Contains(err.Error(), "no h2c request was made") {
		t.Errorf("Check with an idle kind: %v", err)
	}
	bad := upgradertest.Config{Addr: server(t, true), Workers: map[upgradertest.Kind]int{upgradertest.NewConn: 1}, MaxRequests: 3}
	res = upgradertest.Run(context.Background(), bad)
	err := res.Check(bad)
	if err == nil || !strings.Contains(err.Error(), "3 failed requests: map[eof:3]") {
		t.Errorf("Check of 3 failed requests: %v", err)
	}
	if sum := res.Summary(); !strings.Contains(sum, "failed 3 map[eof:3]") {
		t.Errorf("summary %q", sum)
	}
}
