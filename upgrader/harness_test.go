package upgrader_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The tests run the example server, built in TestMain in several variants:
// the normal build and deliberately broken ones (see examples/httpserver).
var (
	binDir   string
	variants = []string{"", "exit", "hang", "unhealthy", "probation-unhealthy", "crash"}
)

func buildServers() error {
	var err error
	binDir, err = os.MkdirTemp("", "handoff-upgrader-test-")
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(variants))
	for i, v := range variants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"build", "-o", variantPath(v)}
			if raceEnabled {
				args = append(args, "-race")
			}
			if v != "" {
				args = append(args, "-ldflags", "-X main.breakMode="+v)
			}
			args = append(args, "github.com/handoff-go/handoff/examples/httpserver")
			out, err := exec.Command("go", args...).CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func variantPath(v string) string {
	if v == "" {
		v = "good"
	}
	return filepath.Join(binDir, "httpserver-"+v)
}

// record is one JSON log line of a server process.
type record struct {
	Msg       string `json:"msg"`
	PID       int    `json:"pid"`
	Gen       int    `json:"generation"`
	Event     string `json:"event"`
	TargetPID int    `json:"target_pid"`
	Error     string `json:"error"`
	Addr      string `json:"addr"`
	State     string `json:"state"`
	Forced    int    `json:"forced"`
	raw       string
}

// server is a running example server and its descendants.
type server struct {
	t       *testing.T
	dir     string
	bin     string // the path every generation is exec'd from
	pidFile string
	addr    string
	cmd     *exec.Cmd
	first   int
	cmdDone chan struct{}
	cmdErr  error

	mu      sync.Mutex
	cond    *sync.Cond
	records []record
	logEOF  bool
}

// startWrapped is startServer for a server started through a wrapper
// command that execs it in place (so the first pid is the server's):
// prefix is the wrapper and its arguments, the server binary and args
// follow. If dial is set, the server starts only once a connection is
// pending (systemd-socket-activate): startWrapped waits for the wrapper to
// say "Listening on", then dials it.
func startWrapped(t *testing.T, prefix []string, dial func(s *server) net.Conn, args ...string) (*server, net.Conn) {
	t.Helper()
	dir := t.TempDir()
	s := &server{t: t, dir: dir, bin: filepath.Join(dir, "httpserver"), pidFile: filepath.Join(dir, "server.pid"), cmdDone: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	s.install("")
	all := append(append(append([]string(nil), prefix...), s.bin, "-addr", "127.0.0.1:0", "-pidfile", s.pidFile, "-log-json"), args...)
	s.cmd = exec.Command(all[0], all[1:]...)
	s.cmd.Dir = dir
	// Our own pipe, not StderrPipe: Wait would close that one when the
	// first generation exits, and later generations share it.
	stderr, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = w
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	s.first = s.cmd.Process.Pid
	go s.readLogs(stderr)
	go func() { s.cmdErr = s.cmd.Wait(); close(s.cmdDone) }()
	t.Cleanup(s.cleanup)
	var c net.Conn
	if dial != nil {
		s.waitRecord(0, 30*time.Second, func(r record) bool { return strings.HasPrefix(r.raw, "Listening on") })
		c = dial(s)
	}
	r := s.waitRecord(0, 30*time.Second, func(r record) bool { return r.Msg == "serving" && r.PID == s.first })
	s.addr = r.Addr
	return s, c
}

// startServer copies the good build to a private path and starts it with
// args; it waits until the first generation serves.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	s, _ := startWrapped(t, nil, nil, args...)
	return s
}

func (s *server) readLogs(rd io.ReadCloser) {
	defer rd.Close()
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		var r record
		if json.Unmarshal([]byte(line), &r) != nil {
			r = record{Msg: "raw", raw: line}
		}
		r.raw = line
		s.mu.Lock()
		s.records = append(s.records, r)
		s.cond.Broadcast()
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.logEOF = true
	s.cond.Broadcast()
	s.mu.Unlock()
}

// mark returns the index of the next log record, to wait for records after it.
func (s *server) mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.records)
}

// waitRecord waits, bounded, for a record at index from or later that
// matches, and returns it.
func (s *server) waitRecord(from int, timeout time.Duration, match func(record) bool) record {
	s.t.Helper()
	r, ok := s.findRecord(from, timeout, match)
	if !ok {
		s.t.Fatalf("no matching log record within %s; log:\n%s", timeout, s.logText(from))
	}
	return r
}

func (s *server) findRecord(from int, timeout time.Duration, match func(record) bool) (record, bool) {
	deadline := time.Now().Add(timeout)
	wake := time.AfterFunc(timeout, func() { s.mu.Lock(); s.cond.Broadcast(); s.mu.Unlock() })
	defer wake.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := from; ; {
		for ; i < len(s.records); i++ {
			if match(s.records[i]) {
				return s.records[i], true
			}
		}
		if s.logEOF || !time.Now().Before(deadline) {
			return record{}, false
		}
		s.cond.Wait()
	}
}

func (s *server) recordsSince(from int) []record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]record(nil), s.records[from:]...)
}

func (s *server) logText(from int) string {
	var b strings.Builder
	for _, r := range s.recordsSince(from) {
		b.WriteString(r.raw)
		b.WriteByte('\n')
	}
	return b.String()
}

// install puts a build variant at the server's path the way a deploy does:
// write a new file beside it and rename it into place.
func (s *server) install(variant string) {
	s.t.Helper()
	src, err := os.ReadFile(variantPath(variant))
	if err != nil {
		s.t.Fatal(err)
	}
	tmp := s.bin + ".new"
	if err := os.WriteFile(tmp, src, 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(tmp, s.bin); err != nil {
		s.t.Fatal(err)
	}
}

// pid returns the pid in the PID file.
func (s *server) pid() int {
	s.t.Helper()
	b, err := os.ReadFile(s.pidFile)
	if err != nil {
		s.t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		s.t.Fatalf("PID file: %v", err)
	}
	return pid
}

func (s *server) signal(pid int, sig syscall.Signal) {
	s.t.Helper()
	if err := syscall.Kill(pid, sig); err != nil {
		s.t.Fatalf("kill -%d %d: %v", sig, pid, err)
	}
}

// upgrade sends SIGHUP to the generation in charge and waits until the new
// one has committed and the old one has exited with status 0. It returns
// the new pid.
func (s *server) upgrade() int {
	s.t.Helper()
	old := s.pid()
	from := s.mark()
	s.signal(old, syscall.SIGHUP)
	r := s.waitRecord(from, 60*time.Second, func(r record) bool {
		return r.PID == old && (r.Event == "committed" && r.TargetPID != old || r.Msg == "upgrade failed")
	})
	if r.Msg == "upgrade failed" {
		s.t.Fatalf("upgrade from %d failed: %s; log:\n%s", old, r.Error, s.logText(from))
	}
	if code := s.waitExit(old, 60*time.Second); code != 0 {
		s.t.Fatalf("old generation %d exited with status %d; log:\n%s", old, code, s.logText(from))
	}
	if got := s.pid(); got != r.TargetPID {
		s.t.Fatalf("PID file says %d, committed generation is %d", got, r.TargetPID)
	}
	return r.TargetPID
}

// waitExit waits, bounded, for pid to exit and reaps it; pid must be the
// first generation or a later one reparented to this process (the test
// process is a child subreaper). It returns the exit status, or 128+signal.
func (s *server) waitExit(pid int, timeout time.Duration) int {
	s.t.Helper()
	if pid == s.first {
		select {
		case <-s.cmdDone:
		case <-time.After(timeout):
			s.t.Fatalf("pid %d did not exit within %s", pid, timeout)
		}
		st := s.cmd.ProcessState.Sys().(syscall.WaitStatus)
		return statusCode(st)
	}
	done := make(chan int, 1)
	go func() {
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				done <- -1000
				return
			}
			done <- statusCode(syscall.WaitStatus(ws))
			return
		}
	}()
	select {
	case code := <-done:
		if code == -1000 {
			s.t.Fatalf("pid %d is not a child of the test process", pid)
		}
		return code
	case <-time.After(timeout):
		s.t.Fatalf("pid %d did not exit within %s", pid, timeout)
	}
	return 0
}

func statusCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// stop sends SIGTERM to the generation in charge and waits for its exit.
func (s *server) stop() int {
	s.t.Helper()
	pid := s.pid()
	s.signal(pid, syscall.SIGTERM)
	return s.waitExit(pid, 60*time.Second)
}

func (s *server) cleanup() {
	// Kill whatever is left of this server, reaping it.
	for _, pid := range descendants(s.bin) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, 0, nil)
	}
	if s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Kill()
		<-s.cmdDone
	}
}

// descendants lists live processes executing a file at path (or the file
// that was at path before a rename replaced it).
func descendants(path string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue
		}
		if strings.TrimSuffix(exe, " (deleted)") == path {
			pids = append(pids, pid)
		}
	}
	return pids
}

// children lists the pids whose parent is ppid, with their state letter.
func children(ppid int) map[int]string {
	out := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if p, _ := strconv.Atoi(f[1]); p == ppid {
			out[pid] = f[0]
		}
	}
	return out
}

// fdList lists the open fds of pid (fd -> target), leaving out its TCP
// client connections, whose number follows the load, not the process's
// health: a socket is kept only if it is a listening TCP socket, a UDP
// socket or a unix socket. The socket tables are read after the fds, so a
// connection accepted meanwhile is not mistaken for a lasting socket.
func fdList(t *testing.T, pid int) []string {
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

// settledFDs lists pid's fds once it has seen its parent exit and its fd
// table has stopped changing: tableflip closes its pipe from the parent on a
// goroutine of its own just after reporting the exit.
func (s *server) settledFDs(pid int) []string {
	s.t.Helper()
	if _, ok := s.findRecord(0, 30*time.Second, func(r record) bool { return r.PID == pid && r.Event == "parent-exited" }); !ok {
		s.t.Fatalf("pid %d did not see its parent exit", pid)
	}
	prev := fdList(s.t, pid)
	for range 50 { // bounded: 50 × 20 ms
		time.Sleep(20 * time.Millisecond) // polling /proc: there is no event for an fd closing
		cur := fdList(s.t, pid)
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

// get fetches path from network/addr over a new connection with a raw
// request, and returns the body.
func get(t *testing.T, network, addr, path string) string {
	t.Helper()
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path)
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	_, body, ok := strings.Cut(string(b), "\r\n\r\n")
	if !ok || !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		t.Fatalf("GET %s: bad response %q", path, b)
	}
	return body
}
