//go:build linux

package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-go/handoff/internal/proc"
)

// processesUnder lists the live processes whose executable lies in dir
// (zombies, which have exited and wait for their parent, are left out).
func processesUnder(dir string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || filepath.Dir(strings.TrimSuffix(exe, " (deleted)")) != dir {
			continue
		}
		if !proc.Gone(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// processesOf lists the live processes that run the executable bin.
func processesOf(bin string) []int {
	var pids []int
	for _, pid := range processesUnder(filepath.Dir(bin)) {
		exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
		if err == nil && strings.TrimSuffix(exe, " (deleted)") == bin {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killBinary kills every process that runs the executable bin.
func killBinary(bin string) {
	for range 3 {
		pids := processesOf(bin)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// killUnder kills every process whose executable lies in dir.
func killUnder(dir string) {
	for range 3 {
		pids := processesUnder(dir)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// watchExit returns a channel that receives the time pid exits, or the zero
// time if it has not exited within limit. It watches a pidfd (exact, and
// works for processes that are not our children; see proc.ExitWatch). Call
// it before the process may exit.
func watchExit(pid int, limit time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	w, err := proc.WatchExit(pid)
	if err != nil {
		ch <- time.Time{}
		return ch
	}
	go func() {
		defer w.Close()
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		at, _ := w.Wait(ctx) // the zero time if it did not exit
		ch <- at
	}()
	return ch
}

// procStat is what /proc says about a serving process.
type procStat struct {
	PID       int `json:"pid"`
	FDs       int `json:"fds"`
	SocketFDs int `json:"socket_fds"`
	OtherFDs  int `json:"other_fds"`
	RSSKB     int `json:"rss_kb"`
	Threads   int `json:"threads"`
}

func statOf(pid int) procStat {
	u, _ := proc.ReadUsage(pid) // zeros for a process that is gone
	return procStat{PID: pid, FDs: u.FDs, SocketFDs: u.SocketFDs, OtherFDs: u.OtherFDs(), RSSKB: u.RSSKB, Threads: u.Threads}
}
