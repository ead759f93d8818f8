//go:build unix

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"time"
)

// event is a JSON log record of the server: a record of handoff.Run (msg
// "handoff: serving", "handoff: upgrade failed", "handoff: exiting", ...) or
// an event of its upgrader (event, target_pid).
type event struct {
	at        time.Time
	Msg       string   `json:"msg"`
	PID       int      `json:"pid"`
	Event     string   `json:"event"`
	TargetPID int      `json:"target_pid"`
	Error     string   `json:"error"`
	Addrs     []string `json:"addrs"`
	Duration  int64    `json:"duration"`
}

// The messages of handoff.Run that the demo waits for.
const (
	msgServing       = "handoff: serving"
	msgUpgradeFailed = "handoff: upgrade failed"
	msgExiting       = "handoff: exiting"
)

// logs collects the server's JSON log records.
type logs struct {
	mu   sync.Mutex
	cond *sync.Cond
	recs []event
	eof  bool
}

func (l *logs) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		e.at = time.Now()
		l.mu.Lock()
		l.recs = append(l.recs, e)
		l.cond.Broadcast()
		l.mu.Unlock()
	}
	l.mu.Lock()
	l.eof = true
	l.cond.Broadcast()
	l.mu.Unlock()
}

func (l *logs) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recs)
}

// wait returns the first record from index from on that matches, or an error
// after timeout.
func (l *logs) wait(from int, timeout time.Duration, match func(event) bool) (event, error) {
	t := time.AfterFunc(timeout, func() { l.mu.Lock(); l.cond.Broadcast(); l.mu.Unlock() })
	defer t.Stop()
	deadline := time.Now().Add(timeout)
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := from; ; {
		for ; i < len(l.recs); i++ {
			if match(l.recs[i]) {
				return l.recs[i], nil
			}
		}
		if l.eof || time.Now().After(deadline) {
			return event{}, errors.New("the server did not report it in time")
		}
		l.cond.Wait()
	}
}
