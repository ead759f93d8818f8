package metrics_test

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/listener"
	"github.com/handoff-go/handoff/metrics"
)

var (
	benchRequest = []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
	benchBody    = []byte("ok")
	benchEnd     = []byte("\r\n\r\nok")
)

// benchServer is the listener package's per-request benchmark server (a
// tracked listener, ConfigureServer, a trivial handler), with or without
// a Recorder counting its connections and, with scrape, a scraper
// gathering the metrics every second, as Prometheus would.
func benchServer(b *testing.B, on, scrape bool) (addr string) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	l := listener.Wrap(inner, listener.Options{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(benchBody) })}
	listener.ConfigureServer(srv)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = srv.Serve(l) }()
	stop := make(chan struct{})
	reg := prometheus.NewRegistry()
	if on {
		rec, err := metrics.New(metrics.Options{Registerer: reg})
		require.NoError(b, err)
		rec.AddListener(l)
	}
	if on && scrape {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					_, _ = reg.Gather()
				}
			}
		}()
	}
	b.Cleanup(func() {
		close(stop)
		srv.Close()
		wg.Wait()
	})
	return l.Addr().String()
}

// BenchmarkRequest is the listener's per-request benchmark (keep-alive,
// raw allocation-free client) with the metrics off and on (issue 13,
// acceptance c): the Recorder adds nothing to a request's path, since
// connection counts are read at scrape time.
func BenchmarkRequest(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run("metrics="+mode, func(b *testing.B) {
			addr := benchServer(b, mode == "on", true)
			c, err := net.Dial("tcp", addr)
			require.NoError(b, err)
			defer c.Close()
			buf := make([]byte, 512)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(benchRequest); err != nil {
					b.Fatal(err)
				}
				if err := readResponse(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func readResponse(c net.Conn, buf []byte) error {
	n := 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		if bytes.HasSuffix(buf[:n], benchEnd) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return errors.New("response too long")
}

// TestHotPathCost runs BenchmarkRequest's two variants alternately, five
// times each, and reports the ratio of their median times per request,
// beside the spread of the "off" runs (the noise); the median allocations
// per request must be equal. The times are taken with the scraper running;
// the allocations of "on" come from runs without it: a Gather's own
// allocations, spread over the requests of whichever run it fell in, are
// not the request's.
func TestHotPathCost(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a measurement: not in -short, not under -race")
	}
	run := func(on, scrape bool) testing.BenchmarkResult {
		r := testing.Benchmark(func(b *testing.B) {
			addr := benchServer(b, on, scrape)
			c, err := net.Dial("tcp", addr)
			require.NoError(b, err)
			defer c.Close()
			buf := make([]byte, 512)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(benchRequest); err != nil {
					b.Fatal(err)
				}
				if err := readResponse(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
		require.NotZero(t, r.N)
		return r
	}
	var off, on []float64
	var offAllocs, onAllocs []int64
	for range 5 {
		r := run(false, false)
		off, offAllocs = append(off, float64(r.T.Nanoseconds())/float64(r.N)), append(offAllocs, r.AllocsPerOp())
		r = run(true, true)
		on = append(on, float64(r.T.Nanoseconds())/float64(r.N))
		onAllocs = append(onAllocs, run(true, false).AllocsPerOp())
	}
	median := func(v []float64) float64 { s := slices.Sorted(slices.Values(v)); return s[len(s)/2] }
	ratio := median(on) / median(off)
	noise := slices.Max(off) / slices.Min(off)
	t.Logf("per request: off %.0f ns (runs %.0f), on %.0f ns (runs %.0f); on/off = %.3f; spread of the off runs %.3f",
		median(off), off, median(on), on, ratio, noise)
	t.Logf("allocs per request: off %v, on %v", offAllocs, onAllocs)
	medianInt := func(v []int64) int64 { s := slices.Sorted(slices.Values(v)); return s[len(s)/2] }
	assert.Equal(t, medianInt(offAllocs), medianInt(onAllocs), "allocations per request")
	assert.Less(t, ratio, max(1.10, noise), "the metrics cost more than the noise")
}
