//go:build linux

package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// probeGet asks addr for /pid on a new connection and returns the pid that
// answered and the time the response ended.
func probeGet(addr string, timeout time.Duration) (int, time.Time, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, time.Time{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "GET /pid HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, time.Time{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, time.Time{}, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	end := time.Now()
	if err != nil {
		return 0, time.Time{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, time.Time{}, fmt.Errorf("status %s", resp.Status)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(body)))
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("body %q: %w", body, err)
	}
	return pid, end, nil
}

// probeAnswer is one answer to the driver's own probe.
type probeAnswer struct {
	pid int
	end time.Time
}

// waitPID probes addr every 2 ms until a pid other than old answers (any
// pid if old is 0), or until limit has passed. It returns that pid and
// every answer it got.
func waitPID(addr string, old int, limit time.Duration) (int, []probeAnswer, int, error) {
	deadline := time.Now().Add(limit)
	var answers []probeAnswer
	errs := 0
	var last error
	for time.Now().Before(deadline) {
		pid, end, err := probeGet(addr, 2*time.Second)
		if err == nil {
			answers = append(answers, probeAnswer{pid, end})
			if pid != old {
				return pid, answers, errs, nil
			}
		} else {
			errs++
			last = err
		}
		time.Sleep(2 * time.Millisecond)
	}
	return 0, answers, errs, fmt.Errorf("no answer from a pid other than %d within %v (last error: %v)", old, limit, last)
}
