//go:build linux

package servertest

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Log messages of the handoff package that the tests look for.
const (
	MsgServing       = "handoff: serving"
	MsgUpgradeFailed = "handoff: upgrade failed"
	MsgStopping      = "handoff: stopping"
	MsgNotReady      = "handoff: not ready"
)

// Record is one JSON log line of a server process.
type Record struct {
	Time      string   `json:"time"`
	Msg       string   `json:"msg"`
	PID       int      `json:"pid"`
	Gen       int      `json:"generation"`
	Event     string   `json:"event"`
	TargetPID int      `json:"target_pid"`
	Error     string   `json:"error"`
	Addr      string   `json:"addr"`
	Addrs     []string `json:"addrs"`
	// HealthAddr is where the probes answer (handoff.Options.HealthAddr).
	HealthAddr string `json:"health_addr"`
	// Phase is the termination policy's (package health's events).
	Phase  string `json:"phase"`
	Forced int    `json:"forced"`
	// HandedOver and Kept are a drain's connections handed to the new
	// generation and ended here; Adopted those a new generation took.
	HandedOver int `json:"handed_over"`
	Kept       int `json:"kept"`
	Adopted    int `json:"adopted"`
	// Welcome, on the spawned record, says how the new generation got
	// its welcome: "file" or "channel".
	Welcome string `json:"welcome"`
	Raw     string `json:"-"`
}

// Server is a running server and its later generations.
type Server struct {
	T       testing.TB
	Dir     string // the server's private directory (t.TempDir)
	Bin     string // the path every generation is exec'd from
	PIDFile string
	Addr    string // the TCP address it serves HTTP on
	First   int    // the first generation's pid

	builds  *Builds
	cmd     *exec.Cmd
	cmdDone chan struct{}

	mu      sync.Mutex
	cond    *sync.Cond
	records []Record
	logEOF  bool
}

// Options of Start.
type Options struct {
	// Prefix is a wrapper command that execs the server in place
	// (systemd-socket-activate): the server's pid is the wrapper's.
	Prefix []string
	// Dial, if set, is called once the wrapper says "Listening on": a
	// socket-activated server starts only once a connection is pending.
	Dial func(s *Server) net.Conn
	// Args are the server's own arguments after -addr, -pidfile and
	// -log-json.
	Args []string
	// Addr is the -addr argument; default 127.0.0.1:0.
	Addr string
	// PIDFile is the PID file's path under the server's directory;
	// default "server.pid".
	PIDFile string
	// NewPIDNamespace starts the server as PID 1 of a new PID namespace,
	// as a container's init (CLONE_NEWPID; the test must run as root).
	// Its records then say pid 1; First is its pid as this process sees
	// it.
	NewPIDNamespace bool
	// Plain: the server does not take -log-json (examples/quickstart
	// logs text). Start then waits for the PID file to name the first
	// generation and reads its address from /proc; the log is kept as raw
	// records.
	Plain bool
}

// Start copies the normal build to a private path, starts it with -log-json
// and a PID file in its directory, and waits until the first generation
// serves. With Options.Dial it returns the connection Dial made.
func Start(t testing.TB, b *Builds, o Options) (*Server, net.Conn) {
	t.Helper()
	dir := t.TempDir()
	s := &Server{T: t, Dir: dir, Bin: filepath.Join(dir, "server"), PIDFile: filepath.Join(dir, "server.pid"), builds: b, cmdDone: make(chan struct{})}
	if o.PIDFile != "" {
		s.PIDFile = filepath.Join(dir, o.PIDFile)
		if err := os.MkdirAll(filepath.Dir(s.PIDFile), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.cond = sync.NewCond(&s.mu)
	s.Install("")
	addr := o.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	all := append(append([]string(nil), o.Prefix...), s.Bin, "-addr", addr, "-pidfile", s.PIDFile)
	if !o.Plain {
		all = append(all, "-log-json")
	}
	all = append(all, o.Args...)
	s.cmd = exec.Command(all[0], all[1:]...)
	s.cmd.Dir = dir
	if o.NewPIDNamespace {
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	}
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
	s.First = s.cmd.Process.Pid
	go s.readLogs(stderr)
	go func() { _ = s.cmd.Wait(); close(s.cmdDone) }()
	t.Cleanup(s.cleanup)
	var c net.Conn
	if o.Dial != nil {
		s.WaitRecord(0, 30*time.Second, func(r Record) bool { return strings.HasPrefix(r.Raw, "Listening on") })
		c = o.Dial(s)
	}
	if o.Plain {
		s.WaitPIDFile(s.First, 30*time.Second)
		addrs := ListeningAddrs(s.First)
		if len(addrs) == 0 {
			t.Fatalf("pid %d listens on nothing; log:\n%s", s.First, s.LogText(0))
		}
		s.Addr = addrs[0]
		return s, c
	}
	pid := s.First
	if o.NewPIDNamespace {
		pid = 1
	}
	r := s.WaitRecord(0, 30*time.Second, func(r Record) bool { return r.Msg == MsgServing && r.PID == pid })
	s.Addr = r.Addr
	return s, c
}

// WaitPIDFile waits, bounded, until the PID file names pid. There is no
// event for another process's rename, so it polls.
func (s *Server) WaitPIDFile(pid int, timeout time.Duration) {
	s.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if got, err := s.ReadPID(); err == nil && got == pid {
			return
		}
		if time.Now().After(deadline) {
			got, err := s.ReadPID()
			s.T.Fatalf("PID file does not name %d within %s (%d, %v); log:\n%s", pid, timeout, got, err, s.LogText(0))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (s *Server) readLogs(rd io.ReadCloser) {
	defer rd.Close()
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		var r Record
		if json.Unmarshal([]byte(line), &r) != nil {
			r = Record{Msg: "raw"}
		}
		r.Raw = line
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

// Mark returns the index of the next log record, to wait for records after
// it.
func (s *Server) Mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.records)
}

// WaitRecord waits, bounded, for a record at index from or later that
// matches, and returns it; it fails the test if none comes.
func (s *Server) WaitRecord(from int, timeout time.Duration, match func(Record) bool) Record {
	s.T.Helper()
	r, ok := s.FindRecord(from, timeout, match)
	if !ok {
		s.T.Fatalf("no matching log record within %s; log:\n%s", timeout, s.LogText(from))
	}
	return r
}

// FindRecord is WaitRecord without failing.
func (s *Server) FindRecord(from int, timeout time.Duration, match func(Record) bool) (Record, bool) {
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
			return Record{}, false
		}
		s.cond.Wait()
	}
}

// RecordsSince returns the records from index from on.
func (s *Server) RecordsSince(from int) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.records[from:]...)
}

// LogText returns the raw log from index from on.
func (s *Server) LogText(from int) string {
	var b strings.Builder
	for _, r := range s.RecordsSince(from) {
		b.WriteString(r.Raw)
		b.WriteByte('\n')
	}
	return b.String()
}

// Install puts a build variant at the server's path the way a deploy does:
// write a new file beside it and rename it into place. It returns the
// installed file's identity, to compare with what a process runs (Runs).
func (s *Server) Install(variant string) os.FileInfo {
	s.T.Helper()
	src, err := os.ReadFile(s.builds.Path(variant))
	if err != nil {
		s.T.Fatal(err)
	}
	tmp := s.Bin + ".new"
	if err := os.WriteFile(tmp, src, 0o755); err != nil {
		s.T.Fatal(err)
	}
	fi, err := os.Stat(tmp)
	if err != nil {
		s.T.Fatal(err)
	}
	if err := os.Rename(tmp, s.Bin); err != nil {
		s.T.Fatal(err)
	}
	return fi
}

// Runs reports whether pid executes the file fi (see Install).
func Runs(pid int, fi os.FileInfo) bool {
	exe, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/exe")
	return err == nil && os.SameFile(exe, fi)
}

// PID returns the pid in the PID file.
func (s *Server) PID() int {
	s.T.Helper()
	pid, err := s.ReadPID()
	if err != nil {
		s.T.Fatalf("PID file: %v", err)
	}
	return pid
}

// ReadPID reads the PID file.
func (s *Server) ReadPID() (int, error) {
	b, err := os.ReadFile(s.PIDFile)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// Signal sends sig to pid.
func (s *Server) Signal(pid int, sig syscall.Signal) {
	s.T.Helper()
	if err := syscall.Kill(pid, sig); err != nil {
		s.T.Fatalf("kill -%d %d: %v", sig, pid, err)
	}
}

// Upgrade sends SIGHUP to the generation in charge and waits until the new
// one has committed and the old one has exited with status 0. It returns the
// new pid.
func (s *Server) Upgrade() int {
	s.T.Helper()
	old := s.PID()
	from := s.Mark()
	s.Signal(old, syscall.SIGHUP)
	r := s.WaitRecord(from, 60*time.Second, func(r Record) bool {
		return r.PID == old && (r.Event == "committed" && r.TargetPID != old || r.Msg == MsgUpgradeFailed)
	})
	if r.Msg == MsgUpgradeFailed {
		s.T.Fatalf("upgrade from %d failed: %s; log:\n%s", old, r.Error, s.LogText(from))
	}
	if code := s.WaitExit(old, 60*time.Second); code != 0 {
		s.T.Fatalf("old generation %d exited with status %d; log:\n%s", old, code, s.LogText(from))
	}
	if got := s.PID(); got != r.TargetPID {
		s.T.Fatalf("PID file says %d, committed generation is %d", got, r.TargetPID)
	}
	return r.TargetPID
}

// WaitExit waits, bounded, for pid to exit and reaps it; pid must be the
// first generation or a later one reparented to this process (see
// MakeSubreaper). It returns the exit status, or 128+signal.
func (s *Server) WaitExit(pid int, timeout time.Duration) int {
	s.T.Helper()
	code, err := s.TryWaitExit(pid, timeout)
	if err != nil {
		s.T.Fatal(err)
	}
	return code
}

// TryWaitExit is WaitExit without failing.
func (s *Server) TryWaitExit(pid int, timeout time.Duration) (int, error) {
	if pid == s.First {
		select {
		case <-s.cmdDone:
		case <-time.After(timeout):
			return 0, &TimeoutError{PID: pid, Timeout: timeout}
		}
		return statusCode(s.cmd.ProcessState.Sys().(syscall.WaitStatus)), nil
	}
	return WaitPID(pid, timeout)
}

// TimeoutError: a process did not exit in time.
type TimeoutError struct {
	PID     int
	Timeout time.Duration
}

func (e *TimeoutError) Error() string {
	return "pid " + strconv.Itoa(e.PID) + " did not exit within " + e.Timeout.String()
}

// WaitPID waits, bounded, for pid to exit, and reaps it if it is a child of
// this process (or a descendant reparented to it). It returns the exit
// status, or 128+signal; a pid that is gone and was reaped by its own
// parent gives a *NotChildError. It waits on a pidfd, so it takes nothing
// from a later wait when it times out.
func WaitPID(pid int, timeout time.Duration) (int, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if err == unix.ESRCH {
			return 0, &NotChildError{PID: pid}
		}
		return 0, err
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(timeout)
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms <= 0 {
			return 0, &TimeoutError{PID: pid, Timeout: timeout}
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n > 0 {
			break
		}
	}
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, &NotChildError{PID: pid}
		}
		return statusCode(syscall.WaitStatus(ws)), nil
	}
}

// NotChildError: the process exited (or is gone) and was not this
// process's child to reap: its own parent reaped it. Its exit status is
// unknown.
type NotChildError struct{ PID int }

func (e *NotChildError) Error() string {
	return "pid " + strconv.Itoa(e.PID) + " exited, reaped by its parent, not by the test process"
}

func statusCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// Stop sends SIGTERM to the generation in charge and waits for its exit.
func (s *Server) Stop() int {
	s.T.Helper()
	pid := s.PID()
	s.Signal(pid, syscall.SIGTERM)
	return s.WaitExit(pid, 60*time.Second)
}

func (s *Server) cleanup() {
	// Kill whatever is left of this server, reaping it.
	for _, pid := range Descendants(s.Bin) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, 0, nil)
	}
	// cmd.Wait's goroutine owns ProcessState until cmdDone is closed.
	select {
	case <-s.cmdDone:
	default:
		_ = s.cmd.Process.Kill()
		<-s.cmdDone
	}
}

// MakeSubreaper makes this process the reaper of its orphaned descendants,
// so that the tests can wait for every generation.
func MakeSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}
