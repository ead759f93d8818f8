//go:build linux

package handoff_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/internal/servertest"
)

// The hand-over of idle keep-alive connections (issue 14), through real
// upgrades of examples/httpserver.

// keepAlive is one client connection held open between requests.
type keepAlive struct {
	c  net.Conn
	br *bufio.Reader
}

// get sends GET /pid on k (without looking whether the server closed it)
// and returns the pid that answered and whether the response said
// "Connection: close".
func (k *keepAlive) get(timeout time.Duration) (string, bool, error) {
	_ = k.c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(k.c, "GET /pid HTTP/1.1\r\nHost: handover\r\n\r\n"); err != nil {
		return "", false, err
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		return "", false, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", false, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", false, fmt.Errorf("status %s", resp.Status)
	}
	return strings.TrimSpace(string(body)), resp.Close, nil
}

// closedByServer looks, without waiting, whether the server closed k: a
// read that returns at once with EOF rather than timing out (what
// upgradertest's checking client and curl do before reusing).
func (k *keepAlive) closedByServer() bool {
	_ = k.c.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := k.br.Peek(1)
	_ = k.c.SetReadDeadline(time.Time{})
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

// openKeepAlive opens n connections to addr, each with one request made,
// answered by pid, and left idle. Cleanup closes them.
func openKeepAlive(t *testing.T, addr string, n, pid int) []*keepAlive {
	t.Helper()
	conns := make([]*keepAlive, n)
	errs := make(chan error, n)
	forEach(n, func(i int) {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			errs <- err
			return
		}
		k := &keepAlive{c: c, br: bufio.NewReader(c)}
		conns[i] = k
		got, _, err := k.get(30 * time.Second)
		switch {
		case err != nil:
			errs <- err
		case got != strconv.Itoa(pid):
			errs <- fmt.Errorf("answered by %s, not %d", got, pid)
		}
	})
	t.Cleanup(func() {
		for _, k := range conns {
			if k != nil {
				k.c.Close()
			}
		}
	})
	close(errs)
	for err := range errs {
		require.NoError(t, err, "opening %d keep-alive connections", n)
	}
	return conns
}

// forEach calls f(0) to f(n-1) on 50 goroutines and waits for them.
func forEach(n int, f func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, 50) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		})
	}
	wg.Wait()
}

// needFiles fails the test unless this process may open n more files (Go
// raises the soft limit to the hard one at start-up; the servers, Go
// programs too, do the same).
func needFiles(t *testing.T, n int) {
	t.Helper()
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim))
	}
	require.GreaterOrEqual(t, lim.Cur, uint64(n+1000), "the open-file limit (ulimit -n) is too low for this test")
}

// countFDs is the number of open fds of pid.
func countFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	require.NoError(t, err)
	return len(ents)
}

// drainOf returns the drain-finished record of pid.
func drainOf(s *servertest.Server, from, pid int) servertest.Record {
	return s.WaitRecord(from, 30*time.Second, eventOf(pid, "drain-finished"))
}

// TestHandOverIdleKeepAlive (issue 14 a): 5,000 idle keep-alive
// connections go through 5 upgrades, each generation handing every one to
// the next; then each is reused without a look: all 5,000 are answered, by
// the newest generation. Every generation holds the same number of fds
// once its parent has exited (its listeners, its runtime's, and the 5,000
// connections), and each old generation exits 0 with all 5,000 handed
// over, none kept.
func TestHandOverIdleKeepAlive(t *testing.T) {
	conns, upgrades := 5000, 5
	if testing.Short() {
		conns, upgrades = 500, 2
	}
	needFiles(t, conns)
	s, _ := servertest.Start(t, httpserver, servertest.Options{Args: []string{"-drain-timeout", "30s"}})
	clients := openKeepAlive(t, s.Addr, conns, s.First)

	var fds []int
	for i := range upgrades {
		old := s.PID()
		from := s.Mark()
		pid := s.Upgrade()
		d := drainOf(s, from, old)
		assert.Equal(t, conns, d.HandedOver, "upgrade %d: connections handed over: %s", i+1, d.Raw)
		if !assert.Zero(t, d.Kept, "upgrade %d: connections ended by the old generation: %s", i+1, d.Raw) {
			t.Log(s.LogText(from))
		}
		s.SettledFDs(pid)
		fds = append(fds, countFDs(t, pid))
	}
	t.Logf("fds of generations 2 to %d once settled: %v", upgrades+1, fds)
	for i, n := range fds {
		assert.InDelta(t, fds[0], n, 2, "fds of generation %d vs generation 2: %v", i+2, fds)
		assert.GreaterOrEqual(t, n, conns, "generation %d holds fewer fds than connections", i+2)
	}

	newest := strconv.Itoa(s.PID())
	var answered, byNewest, closes atomic.Int64
	var mu sync.Mutex
	var failures []string
	forEach(conns, func(i int) {
		got, closed, err := clients[i].get(30 * time.Second)
		if err != nil {
			mu.Lock()
			failures = append(failures, fmt.Sprintf("connection %d: %v", i, err))
			mu.Unlock()
			return
		}
		answered.Add(1)
		if got == newest {
			byNewest.Add(1)
		}
		if closed {
			closes.Add(1)
		}
	})
	t.Logf("%d of %d reused connections answered, %d by the newest generation (%s); %d said Connection: close",
		answered.Load(), conns, byNewest.Load(), newest, closes.Load())
	assert.Zero(t, len(failures), "first failures: %v", failures[:min(len(failures), 10)])
	assert.Equal(t, int64(conns), answered.Load())
	assert.Equal(t, int64(conns), byNewest.Load())
	assert.Zero(t, closes.Load())
	assert.Zero(t, s.Stop())
	assert.Empty(t, servertest.Descendants(s.Bin))
}

// TestHandOverReuseDuringDrain (issue 14 f): 5,000 idle keep-alive
// connections, each reused once by a client that first looks whether the
// server closed it (and dials again if so), the reuses spread over the
// first half second of the old generation's drain, which a stream keeps
// open: no request is lost; each is answered by one generation or the
// other.
func TestHandOverReuseDuringDrain(t *testing.T) {
	conns := 5000
	if testing.Short() {
		conns = 500
	}
	needFiles(t, conns)
	s, _ := servertest.Start(t, httpserver, servertest.Options{Args: []string{"-drain-timeout", "30s"}})
	old := s.PID()
	clients := openKeepAlive(t, s.Addr, conns, old)
	stopStream := streamInFlight(t, s, old, 3*time.Second)

	from := s.Mark()
	s.Install("")
	s.Signal(old, syscall.SIGHUP)
	newPID := s.WaitRecord(from, 60*time.Second, committedBy(old)).TargetPID
	var lost, redialled atomic.Int64
	byPID := map[string]int{}
	var mu sync.Mutex
	var failures []string
	reuse := func(i int) {
		k := clients[i]
		if k.closedByServer() {
			redialled.Add(1)
			k.c.Close()
			c, err := net.DialTimeout("tcp", s.Addr, 10*time.Second)
			if err != nil {
				lost.Add(1)
				return
			}
			k.c, k.br = c, bufio.NewReader(c)
		}
		got, _, err := k.get(30 * time.Second)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			lost.Add(1)
			failures = append(failures, fmt.Sprintf("connection %d: %v", i, err))
			return
		}
		byPID[got]++
	}
	// A goroutine per connection, each starting at a random moment of the
	// drain's first half second.
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() {
			time.Sleep(rand.N(500 * time.Millisecond))
			reuse(i)
		})
	}
	wg.Wait()
	d := drainOf(s, from, old)
	res := stopStream()
	t.Logf("old %d, new %d: answered by pid %v; lost %d; found closed and dialled again %d; drain: %s",
		old, newPID, byPID, lost.Load(), redialled.Load(), d.Raw)
	assert.Zero(t, lost.Load(), "lost requests; first: %v", failures[:min(len(failures), 10)])
	assert.Zero(t, res.Failed(), "the stream: %s", res.FirstFailures(5))
	assert.Equal(t, conns, byPID[strconv.Itoa(old)]+byPID[strconv.Itoa(newPID)], "answered by another pid: %v", byPID)
	assert.Zero(t, s.WaitExit(old, 30*time.Second))
	assert.Zero(t, s.Stop())
}

// TestHandOverSlowHeaderAcrossUpgrade (issue 14 d): 8 clients on a slow
// link whose request header arrives in two parts 600 ms apart, the second
// after the upgrade committed and the old generation began its drain
// (with the default idle grace of 300 ms): all 8 are answered by the old
// generation, which read the first part, and their connections then move
// to the new one.
func TestHandOverSlowHeaderAcrossUpgrade(t *testing.T) {
	const (
		n     = 8
		delay = 600 * time.Millisecond
		req   = "GET /pid HTTP/1.1\r\nHost: test\r\nUser-Agent: slow-link\r\n\r\n"
	)
	s, _ := servertest.Start(t, httpserver, servertest.Options{})
	old := s.PID()
	clients := make([]*keepAlive, n)
	for i := range clients {
		if i%2 == 1 {
			clients[i] = openKeepAlive(t, s.Addr, 1, old)[0] // half of them after a first request
			continue
		}
		c, err := net.DialTimeout("tcp", s.Addr, 10*time.Second)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		clients[i] = &keepAlive{c: c, br: bufio.NewReader(c)}
	}
	half := len(req) / 2
	for i, k := range clients {
		_, err := io.WriteString(k.c, req[:half])
		require.NoError(t, err, "client %d", i)
	}
	from := s.Mark()
	s.Install("")
	s.Signal(old, syscall.SIGHUP)
	newPID := s.WaitRecord(from, 60*time.Second, eventOf(old, "drain-started")).PID
	require.Equal(t, old, newPID)
	time.Sleep(delay)
	answered := 0
	for i, k := range clients {
		_, err := io.WriteString(k.c, req[half:])
		require.NoError(t, err, "client %d", i)
		_ = k.c.SetReadDeadline(time.Now().Add(30 * time.Second))
		resp, err := http.ReadResponse(k.br, nil)
		if !assert.NoError(t, err, "client %d", i) {
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, strconv.Itoa(old), strings.TrimSpace(string(body)), "client %d", i)
		answered++
	}
	assert.Equal(t, n, answered, "clients answered")
	d := drainOf(s, from, old)
	t.Logf("drain: %s", d.Raw)
	assert.Zero(t, d.Forced)
	assert.Zero(t, s.WaitExit(old, 30*time.Second))
	next := strconv.Itoa(s.PID())
	for i, k := range clients {
		got, _, err := k.get(30 * time.Second)
		if assert.NoError(t, err, "client %d after the upgrade", i) {
			assert.Equal(t, next, got, "client %d after the upgrade", i)
		}
	}
	assert.Zero(t, s.Stop())
}

// TestHandOverFallback: when either generation has the hand-over off (as
// an older binary, which does not offer it, has), connections drain as
// before: none is handed over, idle ones are closed after the grace (a
// client that looks first sees it and dials again), and no request fails.
func TestHandOverFallback(t *testing.T) {
	for _, off := range []string{"old", "new"} {
		t.Run("off-in-"+off, func(t *testing.T) {
			var args []string
			if off == "old" {
				args = []string{"-no-handover"}
			}
			s, _ := servertest.Start(t, httpserver, servertest.Options{Args: args})
			old := s.PID()
			clients := openKeepAlive(t, s.Addr, 20, old)
			if off == "new" {
				// The new generation runs with other flags: a wrapper
				// script at the server's path that execs the build with
				// -no-handover, as an older binary would not offer it.
				installWithFlag(t, s, "-no-handover")
			} else {
				s.Install("")
			}
			from := s.Mark()
			s.Signal(old, syscall.SIGHUP)
			d := drainOf(s, from, old)
			assert.Zero(t, d.HandedOver, "handed over: %s", d.Raw)
			assert.Equal(t, 20, d.Kept, "%s", d.Raw)
			assert.Zero(t, s.WaitExit(old, 30*time.Second))
			for i, k := range clients {
				assert.True(t, k.closedByServer(), "client %d: the old generation left its connection open", i)
			}
			assert.Zero(t, s.Stop())
		})
	}
}

// installWithFlag installs, the way Install does, a script at the server's
// path that execs the normal build with the same arguments plus flag.
func installWithFlag(t *testing.T, s *servertest.Server, flag string) {
	t.Helper()
	script := fmt.Sprintf("#!/bin/sh\nexec %s \"$@\" %s\n", httpserver.Path(""), flag)
	tmp := s.Bin + ".new"
	require.NoError(t, os.WriteFile(tmp, []byte(script), 0o755))
	require.NoError(t, os.Rename(tmp, s.Bin))
}
