//go:build linux

package main

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
		if !gone(pid) {
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

// gone reports whether pid has exited: it is not in /proc, or it is a
// zombie waiting for its parent to reap it.
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z' || s[i+2] == 'X'
}

// watchExit returns a channel that receives the time pid exits, or the zero
// time if it has not exited within limit. It watches a pidfd (exact, and
// works for processes that are not our children); without pidfds it polls
// /proc every millisecond. Call it before the process may exit.
func watchExit(pid int, limit time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		ch <- time.Now()
		return ch
	}
	go func() {
		deadline := time.Now().Add(limit)
		if err == nil {
			defer unix.Close(fd)
			for time.Now().Before(deadline) {
				fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				n, err := unix.Poll(fds, 100)
				if n > 0 {
					ch <- time.Now()
					return
				}
				if err != nil && !errors.Is(err, unix.EINTR) {
					break
				}
			}
		}
		for time.Now().Before(deadline) {
			if gone(pid) {
				ch <- time.Now()
				return
			}
			time.Sleep(time.Millisecond)
		}
		ch <- time.Time{}
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
	st := procStat{PID: pid}
	dir := "/proc/" + strconv.Itoa(pid)
	ents, _ := os.ReadDir(dir + "/fd")
	for _, e := range ents {
		st.FDs++
		if l, err := os.Readlink(dir + "/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			st.SocketFDs++
		}
	}
	st.OtherFDs = st.FDs - st.SocketFDs
	b, _ := os.ReadFile(dir + "/status")
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			st.RSSKB, _ = strconv.Atoi(f[0])
		case "Threads":
			st.Threads, _ = strconv.Atoi(f[0])
		}
	}
	return st
}
