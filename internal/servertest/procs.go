//go:build linux

package servertest

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/handoff-go/handoff/internal/proc"
)

// Descendants lists live processes executing a file at path (or the file
// that was at path before a rename replaced it).
func Descendants(path string) []int {
	var pids []int
	for _, pid := range proc.PIDs() {
		exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "exe"))
		if err != nil {
			continue
		}
		if strings.TrimSuffix(exe, " (deleted)") == path {
			if st, err := proc.ReadStat(pid); err == nil && st.State == 'Z' {
				continue // exited, not yet reaped
			}
			pids = append(pids, pid)
		}
	}
	return pids
}

// Children lists the pids whose parent is ppid, with their state letter.
func Children(ppid int) map[int]string {
	out := map[int]string{}
	for _, pid := range proc.PIDs() {
		st, err := proc.ReadStat(pid)
		if err == nil && st.PPID == ppid {
			out[pid] = string(st.State)
		}
	}
	return out
}

// FDList lists the open fds of pid (fd -> target), leaving out its TCP
// client connections, whose number follows the load, not the process's
// health: a socket is kept only if it is a listening TCP socket, a UDP
// socket or a unix socket. The socket tables are read after the fds, so a
// connection accepted meanwhile is not mistaken for a lasting socket.
func FDList(t testing.TB, pid int) []string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	links := map[string]string{}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
			links[e.Name()] = l
		}
	}
	lasting := lastingSocketInodes()
	var out []string
	for fd, l := range links {
		if ino, ok := strings.CutPrefix(l, "socket:["); ok && !lasting[strings.TrimSuffix(ino, "]")] {
			continue
		}
		out = append(out, fd+"->"+l)
	}
	sort.Strings(out)
	return out
}

// SettledFDs lists pid's fds once it has seen its parent exit and its fd
// table has stopped changing: tableflip closes its pipe from the parent on a
// goroutine of its own just after reporting the exit.
func (s *Server) SettledFDs(pid int) []string {
	s.T.Helper()
	if _, ok := s.FindRecord(0, 30*time.Second, func(r Record) bool { return r.PID == pid && r.Event == "parent-exited" }); !ok {
		s.T.Fatalf("pid %d did not see its parent exit", pid)
	}
	prev := FDList(s.T, pid)
	for range 50 { // bounded: 50 × 20 ms
		time.Sleep(20 * time.Millisecond) // polling /proc: there is no event for an fd closing
		cur := FDList(s.T, pid)
		if slices.Equal(cur, prev) {
			return cur
		}
		prev = cur
	}
	return prev
}

// lastingSocketInodes returns the inodes of listening TCP sockets, UDP
// sockets and unix sockets.
func lastingSocketInodes() map[string]bool {
	m := map[string]bool{}
	for _, tab := range []struct {
		file       string
		inodeField int
		listenOnly bool
	}{
		{"/proc/net/tcp", 9, true}, {"/proc/net/tcp6", 9, true},
		{"/proc/net/udp", 9, false}, {"/proc/net/udp6", 9, false},
		{"/proc/net/unix", 6, false},
	} {
		b, err := os.ReadFile(tab.file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) <= tab.inodeField || tab.listenOnly && f[3] != "0A" {
				continue
			}
			m[f[tab.inodeField]] = true
		}
	}
	return m
}

// ListeningAddrs lists the TCP addresses pid listens on ("127.0.0.1:8080",
// "[::1]:8080"), from its fds and the kernel's socket tables.
func ListeningAddrs(pid int) []string {
	inodes := map[string]bool{}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
			if ino, ok := strings.CutPrefix(l, "socket:["); ok {
				inodes[strings.TrimSuffix(ino, "]")] = true
			}
		}
	}
	var out []string
	for _, tab := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(tab)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) <= 9 || f[3] != "0A" || !inodes[f[9]] {
				continue
			}
			if a := hexAddr(f[1]); a != "" {
				out = append(out, a)
			}
		}
	}
	sort.Strings(out)
	return out
}

// hexAddr decodes a /proc/net/tcp address ("0100007F:1F90").
func hexAddr(s string) string {
	h, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil {
		return ""
	}
	var ip net.IP
	switch len(h) {
	case 8:
		v, err := strconv.ParseUint(h, 16, 32)
		if err != nil {
			return ""
		}
		ip = net.IPv4(byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
	case 32:
		ip = make(net.IP, 16)
		for i := range 4 {
			v, err := strconv.ParseUint(h[8*i:8*i+8], 16, 32)
			if err != nil {
				return ""
			}
			ip[4*i], ip[4*i+1], ip[4*i+2], ip[4*i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		}
	default:
		return ""
	}
	return net.JoinHostPort(ip.String(), strconv.FormatUint(port, 10))
}

// CountSockets counts the socket fds of pid.
func CountSockets(pid int) int {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	n := 0
	for _, e := range ents {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// WaitSockets waits, bounded, until pid holds at least n socket fds (its
// listeners plus connections in flight). There is no event to wait for, so
// it polls /proc.
func WaitSockets(t testing.TB, pid, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if CountSockets(pid) >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("fewer than %d sockets in pid %d", n, pid)
}

// Get fetches path from network/addr over a new connection with a raw
// request, and returns the body.
func Get(t testing.TB, network, addr, path string) string {
	t.Helper()
	body, err := TryGet(network, addr, path, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// TryGet is Get without failing.
func TryGet(network, addr, path string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return "", fmt.Errorf("dial %s %s: %w", network, addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path)
	b, err := io.ReadAll(c)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	_, body, ok := strings.Cut(string(b), "\r\n\r\n")
	if !ok || !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		return "", fmt.Errorf("GET %s: bad response %q", path, b)
	}
	return body, nil
}
