//go:build linux

package upgrader

import (
	"bytes"
	"os"
	"strconv"
	"time"

	"github.com/handoff-go/handoff/internal/proc"
)

// sdWaitControl waits, at most timeout, until no other process that
// systemd started for this unit is left: a process whose parent is this
// process's parent (systemd) and that shares this process's cgroup, such as
// the "kill -HUP $MAINPID" of ExecReload=. systemd reads the PID file when
// it reaps that process; it must do so before the new generation can write
// the file. Gone from /proc means reaped. It does nothing unless the parent
// is systemd.
//
// There is no event for another process's child being reaped, so it polls,
// bounded.
func (u *Upgrader) sdWaitControl(timeout time.Duration) {
	ppid := os.Getppid()
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(ppid) + "/comm")
	if err != nil || string(comm) != "systemd\n" {
		return
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return
	}
	deadline := time.Now().Add(timeout)
	for {
		left := siblingsInCgroup(ppid, cg)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			u.log.Warn("upgrader: processes systemd started for this unit are still running; upgrading anyway", "pids", left)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// siblingsInCgroup lists the processes other than this one whose parent is
// ppid and whose cgroup file reads cg.
func siblingsInCgroup(ppid int, cg []byte) []int {
	self := os.Getpid()
	var pids []int
	for _, pid := range proc.Children(ppid) {
		if pid == self {
			continue
		}
		if c, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup"); err == nil && bytes.Equal(c, cg) {
			pids = append(pids, pid)
		}
	}
	return pids
}
