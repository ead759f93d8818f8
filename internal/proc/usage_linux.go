//go:build linux

package proc

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Gone reports whether pid has exited: it is not in /proc, or it is a
// zombie (or dead) process that waits for its parent to reap it.
func Gone(pid int) bool {
	st, err := ReadStat(pid)
	return err != nil || st.State == 'Z' || st.State == 'X'
}

// ReadUsage reads pid's Usage from /proc/<pid>/fd and /proc/<pid>/status.
func ReadUsage(pid int) (Usage, error) {
	var u Usage
	dir := "/proc/" + strconv.Itoa(pid)
	ents, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return u, err
	}
	for _, e := range ents {
		u.FDs++
		if l, err := os.Readlink(filepath.Join(dir, "fd", e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			u.SocketFDs++
		}
	}
	b, err := os.ReadFile(dir + "/status")
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		f := strings.Fields(v)
		if !ok || len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			u.RSSKB, _ = strconv.Atoi(f[0])
		case "Threads":
			u.Threads, _ = strconv.Atoi(f[0])
		}
	}
	return u, nil
}

// Cmdline returns the arguments pid was started with (empty for a kernel
// thread or a zombie).
func Cmdline(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return nil, err
	}
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil, nil
	}
	return strings.Split(string(b), "\x00"), nil
}

// Descendants lists pid's children, their children, and so on, parents
// before their children.
func Descendants(pid int) []int {
	var out []int
	seen := map[int]bool{pid: true}
	for queue := []int{pid}; len(queue) > 0; queue = queue[1:] {
		for _, c := range Children(queue[0]) {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}
