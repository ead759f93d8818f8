package listener_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/listener"
)

var (
	benchRequest = []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
	benchBody    = []byte("ok")
	benchEnd     = []byte("\r\n\r\nok")
)

func benchHandler(w http.ResponseWriter, _ *http.Request) { w.Write(benchBody) }

// readBenchResponse reads one response of benchHandler into buf without
// allocating: it ends with the blank line and the 2-byte body.
func readBenchResponse(c net.Conn, buf []byte) error {
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

// BenchmarkAcceptServe compares plain net/http with the same server on a
// tracked listener (Wrap + ConfigureServer), for a trivial handler. The
// client is raw and allocation-free, so allocs/op are the server's (plus,
// for new-conn, the dial's, the same in both).
func BenchmarkAcceptServe(b *testing.B) {
	for _, mode := range []string{"plain", "tracked"} {
		b.Run(mode, func(b *testing.B) {
			ln := listen(b)
			var l net.Listener = ln
			srv := &http.Server{Handler: http.HandlerFunc(benchHandler)}
			if mode == "tracked" {
				l = listener.Wrap(ln, listener.Options{})
				listener.ConfigureServer(srv)
			}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(l) }()
			defer func() {
				srv.Close()
				<-done
			}()
			addr := ln.Addr().String()
			buf := make([]byte, 512)

			// In the timed loops, errors are checked without testify: its
			// Helper call per check would be measured with the server.
			b.Run("keepalive", func(b *testing.B) {
				c, err := net.Dial("tcp", addr)
				require.NoError(b, err)
				defer c.Close()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.Write(benchRequest); err != nil {
						b.Fatal(err)
					}
					if err := readBenchResponse(c, buf); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("newconn", func(b *testing.B) {
				var d net.Dialer
				b.ReportAllocs()
				for b.Loop() {
					c, err := d.Dial("tcp", addr)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := c.Write(benchRequest); err != nil {
						b.Fatal(err)
					}
					if err := readBenchResponse(c, buf); err != nil {
						b.Fatal(err)
					}
					c.Close()
				}
			})
		})
	}
}

const benchClientEnv = "HANDOFF_LISTENER_BENCH_CLIENT"

// BenchmarkDrain measures Drain of n idle keep-alive connections: the
// listener's own cost (timers, closes, waiting for net/http to let go), so
// the idle grace is 1ns here; with the default grace, each op would take
// 300ms more. The clients run in a child process (the test binary,
// re-executed), which holds their n file descriptors.
func BenchmarkDrain(b *testing.B) {
	limit, err := raiseFileLimit()
	if err != nil {
		b.Skipf("cannot raise the open-file limit: %v", err)
	}
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("idle=%d", n), func(b *testing.B) {
			if need := uint64(n) + 256; limit < need {
				b.Skipf("open-file limit %d < %d needed for %d connections; raise the hard limit (ulimit -Hn)", limit, need, n)
			}
			b.ReportAllocs()
			// The timer runs through the set-up (a client process, n
			// connections), so that the benchmark does not raise b.N
			// until Drain alone fills -benchtime: that would start tens
			// of thousands of processes. Drain's own time is measured
			// here and reported as drain-ns/op and drain-ns/conn.
			var drain time.Duration
			for range b.N {
				drain += benchDrainOnce(b, n)
			}
			b.ReportMetric(float64(drain.Nanoseconds())/float64(b.N), "drain-ns/op")
			b.ReportMetric(float64(drain.Nanoseconds())/float64(b.N*n), "drain-ns/conn")
		})
	}
}

func benchDrainOnce(b *testing.B, n int) time.Duration {
	l := wrap(b, listen(b), listener.Options{IdleGrace: time.Nanosecond})
	srv := &http.Server{Handler: http.HandlerFunc(benchHandler)}
	listener.ConfigureServer(srv)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d", benchClientEnv, l.Addr(), n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(b, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(b, err)
	require.NoError(b, cmd.Start())
	defer func() {
		stdin.Close() // the client exits on EOF
		assert.NoError(b, cmd.Wait(), "client")
	}()
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		require.Equal(b, "ready\n", line, "the client's first line")
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		b.Fatal("client not ready")
	}
	l.untilCounts(b, listener.Counts{Idle: n, Accepted: uint64(n)})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	s, err := l.Drain(ctx)
	took := time.Since(start)
	require.NoError(b, err)
	require.Equal(b, n, s.ClosedIdle, "stats %+v", s)
	require.NoError(b, srv.Shutdown(ctx))
	require.ErrorIs(b, <-done, http.ErrServerClosed)
	return took
}

// benchClient is the child process of BenchmarkDrain: it opens n
// keep-alive connections to addr, makes one request on each, prints
// "ready", and holds them until its stdin is closed.
func benchClient(spec string) int {
	addr, ns, _ := strings.Cut(spec, ",")
	n, err := strconv.Atoi(ns)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad spec:", spec)
		return 2
	}
	if _, err := raiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	d := net.Dialer{Timeout: 30 * time.Second}
	buf := make([]byte, 512)
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dial:", err)
			return 1
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(time.Minute))
		if _, err := c.Write(benchRequest); err != nil {
			fmt.Fprintln(os.Stderr, "write:", err)
			return 1
		}
		if err := readBenchResponse(c, buf); err != nil {
			fmt.Fprintln(os.Stderr, "read:", err)
			return 1
		}
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}
