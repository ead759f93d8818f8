//go:build linux

package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrNotSupported is returned outside Linux.
var ErrNotSupported = errors.New("proc: not supported on this platform")

// Stat is what the project reads of /proc/<pid>/stat.
type Stat struct {
	PID   int
	State byte // R, S, D, Z, T...
	PPID  int
}

// ReadStat parses /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may contain spaces and parentheses, so the fields are
// counted from the last ')'.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	return parseStat(pid, b)
}

func parseStat(pid int, b []byte) (Stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("proc: malformed /proc/%d/stat", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("proc: malformed /proc/%d/stat", pid)
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return Stat{}, fmt.Errorf("proc: malformed /proc/%d/stat: %w", pid, err)
	}
	return Stat{PID: pid, State: f[0][0], PPID: ppid}, nil
}

// ParentPID returns the parent of pid.
func ParentPID(pid int) (int, error) {
	st, err := ReadStat(pid)
	return st.PPID, err
}

// PIDs lists the processes in /proc.
func PIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// Children lists the children of pid: from each of its threads' children
// file where the kernel has them, else by a scan of /proc.
func Children(pid int) []int {
	var out []int
	files, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	if len(files) > 0 {
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					out = append(out, c)
				}
			}
		}
		return out
	}
	for _, c := range PIDs() {
		if p, err := ParentPID(c); err == nil && p == pid {
			out = append(out, c)
		}
	}
	return out
}

// Environ returns the environment pid was started with.
func Environ(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), nil
}

// FD returns what fd of pid refers to ("pipe:[123]", "socket:[9]", a path).
func FD(pid, fd int) (string, error) {
	return os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "fd", strconv.Itoa(fd)))
}
