//go:build linux

package activation_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/handoff-go/handoff/internal/activation"
)

const helperEnv = "HANDOFF_ACTIVATION_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helper())
	}
	goleak.VerifyTestMain(m)
}

// report is what the helper process prints.
type report struct {
	Sockets []struct{ Name, Network, Addr, Kind string }
	Err     string
	Env     []string // LISTEN_* left in the environment
	Served  []string // what it answered
}

// helper runs in a process started with sockets: it adopts them, answers
// one connection on each stream socket with its name, and prints a report.
func helper() int {
	if os.Getenv(helperEnv) == "setpid" {
		// Stand in for the service manager, which knows the pid it execs.
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	socks, err := activation.Sockets()
	var r report
	if err != nil {
		r.Err = err.Error()
	}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LISTEN_") {
			r.Env = append(r.Env, kv)
		}
	}
	for _, s := range socks {
		kind := "stream"
		if s.PacketConn != nil {
			kind = "datagram"
		}
		r.Sockets = append(r.Sockets, struct{ Name, Network, Addr, Kind string }{s.Name, s.Addr().Network(), s.Addr().String(), kind})
	}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
	for _, s := range socks {
		if s.Listener == nil {
			s.Close()
			continue
		}
		c, err := s.Listener.Accept()
		if err != nil {
			return 1
		}
		fmt.Fprintf(c, "%s from %d\n", s.Name, os.Getpid())
		c.Close()
		s.Close()
	}
	return 0
}

// runHelper starts cmd, reads the helper's report, then dials each address
// in dial (network, addr pairs) and returns the report and the answers.
func runHelper(t *testing.T, cmd *exec.Cmd, dial [][2]string) (report, []string) {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	defer stop()
	var r report
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Wait()
		t.Fatalf("helper report: %v", err)
	}
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatalf("helper report %q: %v", line, err)
	}
	var answers []string
	for _, d := range dial {
		c, err := net.DialTimeout(d[0], d[1], 10*time.Second)
		if err != nil {
			t.Errorf("dial %s %s: %v", d[0], d[1], err)
			continue
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Errorf("read from %s: %v", d[1], err)
		}
		answers = append(answers, strings.TrimSpace(string(b)))
	}
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		t.Errorf("helper: %v", err)
	}
	return r, answers
}

func helperCmd(mode string, args ...string) *exec.Cmd {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	return cmd
}

// TestSocketsPassed: descriptors passed like a service manager passes them
// (fds 3.., LISTEN_FDNAMES with one empty name) are adopted with their
// names and the variables are unset.
func TestSocketsPassed(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	path := filepath.Join(t.TempDir(), "s.sock")
	ux, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ux.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	var files []*os.File
	for _, c := range []interface{ File() (*os.File, error) }{tcp.(*net.TCPListener), ux.(*net.UnixListener), udp.(*net.UDPConn)} {
		f, err := c.File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
	}
	cmd := helperCmd("setpid", os.Args[0], "-test.run=^$")
	cmd.ExtraFiles = files
	cmd.Env = append(cmd.Env, "LISTEN_FDS=3", "LISTEN_FDNAMES=web::dns")
	r, answers := runHelper(t, cmd, [][2]string{{"tcp", tcp.Addr().String()}, {"unix", path}})
	if r.Err != "" || len(r.Env) != 0 {
		t.Errorf("error %q, environment left %v", r.Err, r.Env)
	}
	want := []string{"web tcp " + tcp.Addr().String() + " stream", "LISTEN_FD_4 unix " + path + " stream", "dns udp " + udp.LocalAddr().String() + " datagram"}
	if len(r.Sockets) != len(want) {
		t.Fatalf("sockets %+v, want %v", r.Sockets, want)
	}
	for i, s := range r.Sockets {
		if got := strings.Join([]string{s.Name, s.Network, s.Addr, s.Kind}, " "); got != want[i] {
			t.Errorf("socket %d = %s, want %s", i, got, want[i])
		}
	}
	if len(answers) != 2 || !strings.HasPrefix(answers[0], "web from ") || !strings.HasPrefix(answers[1], "LISTEN_FD_4 from ") {
		t.Errorf("answers %q", answers)
	}
}

// TestSocketsOtherPID: sockets meant for another process are not adopted,
// and the variables are unset all the same.
func TestSocketsOtherPID(t *testing.T) {
	cmd := helperCmd("1", os.Args[0], "-test.run=^$")
	cmd.Env = append(cmd.Env, "LISTEN_FDS=1", "LISTEN_PID=1")
	r, _ := runHelper(t, cmd, nil)
	if len(r.Sockets) != 0 || len(r.Env) != 0 || r.Err != "" {
		t.Errorf("report %+v", r)
	}
}

// TestSocketsNotASocket: a passed descriptor that is not a socket is
// reported and dropped.
func TestSocketsNotASocket(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := helperCmd("setpid", os.Args[0], "-test.run=^$")
	cmd.ExtraFiles = []*os.File{f}
	cmd.Env = append(cmd.Env, "LISTEN_FDS=1", "LISTEN_FDNAMES=null")
	r, _ := runHelper(t, cmd, nil)
	if len(r.Sockets) != 0 || !strings.Contains(r.Err, `"null"`) {
		t.Errorf("report %+v", r)
	}
}

// TestSystemdSocketActivate: systemd's own systemd-socket-activate passes a
// TCP and a unix socket, named.
func TestSystemdSocketActivate(t *testing.T) {
	bin, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("systemd-socket-activate not installed")
	}
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			addr := filepath.Join(t.TempDir(), "web.sock")
			if network == "tcp" {
				addr = freePort(t)
			}
			// systemd-socket-activate passes on only the variables named with -E.
			cmd := exec.Command(bin, "-l", addr, "--fdname=web", "-E", helperEnv+"=1", os.Args[0], "-test.run=^$")
			r, answers := runHelperRetry(t, cmd, network, addr)
			if r.Err != "" || len(r.Env) != 0 || len(r.Sockets) != 1 {
				t.Fatalf("report %+v", r)
			}
			s := r.Sockets[0]
			if s.Name != "web" || s.Network != network || s.Kind != "stream" {
				t.Errorf("socket %+v", s)
			}
			if len(answers) != 1 || !strings.HasPrefix(answers[0], "web from ") {
				t.Errorf("answers %q", answers)
			}
		})
	}
}

// runHelperRetry runs a helper under systemd-socket-activate, which binds
// the socket, says so on stderr, and execs the helper only once a
// connection is pending: it connects first, then reads the report and the
// answer.
func runHelperRetry(t *testing.T, cmd *exec.Cmd, network, addr string) (report, []string) {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	defer stop()
	stderr := bufio.NewReader(errPipe)
	if line, err := stderr.ReadString('\n'); err != nil || !strings.HasPrefix(line, "Listening on") {
		_ = cmd.Wait()
		t.Fatalf("systemd-socket-activate: %q %v", line, err)
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	c, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, addr, err)
	}
	defer c.Close()
	var r report
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Wait()
		t.Fatalf("helper report: %v", err)
	}
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatalf("helper report %q: %v", line, err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Errorf("read from %s: %v", addr, err)
	}
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		t.Errorf("helper: %v", err)
	}
	return r, []string{strings.TrimSpace(string(b))}
}

// freePort returns a loopback address with a port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestMatches(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	port := strconv.Itoa(tcp.Addr().(*net.TCPAddr).Port)
	any4, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer any4.Close()
	anyPort := strconv.Itoa(any4.Addr().(*net.TCPAddr).Port)
	dir := t.TempDir()
	path := filepath.Join(dir, "m.sock")
	ux, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ux.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	udpPort := strconv.Itoa(udp.LocalAddr().(*net.UDPAddr).Port)

	lo := activation.Socket{Name: "lo", Listener: tcp}
	all := activation.Socket{Name: "all", Listener: any4}
	us := activation.Socket{Name: "u", Listener: ux}
	dg := activation.Socket{Name: "d", PacketConn: udp}
	cases := []struct {
		s       activation.Socket
		network string
		addr    string
		want    bool
	}{
		{lo, "tcp", "127.0.0.1:" + port, true},
		{lo, "tcp4", "127.0.0.1:" + port, true},
		{lo, "tcp6", "127.0.0.1:" + port, false},
		{lo, "tcp", "localhost:" + port, true},
		{lo, "tcp", ":" + port, false},
		{lo, "tcp", "127.0.0.2:" + port, false},
		{lo, "tcp", "127.0.0.1:0", false},
		{lo, "unix", "127.0.0.1:" + port, false},
		{lo, "udp", "127.0.0.1:" + port, false},
		{lo, "tcp", "garbage", false},
		{all, "tcp", ":" + anyPort, true},
		{all, "tcp", "0.0.0.0:" + anyPort, true},
		{all, "tcp", "[::]:" + anyPort, true},
		{all, "tcp", "127.0.0.1:" + anyPort, false},
		{us, "unix", path, true},
		{us, "unix", filepath.Join(dir, ".", "m.sock"), true},
		{us, "unixpacket", path, false},
		{us, "unix", path + "x", false},
		{dg, "udp", "127.0.0.1:" + udpPort, true},
		{dg, "tcp", "127.0.0.1:" + udpPort, false},
	}
	for _, c := range cases {
		if got := c.s.Matches(c.network, c.addr); got != c.want {
			t.Errorf("%s.Matches(%s, %s) = %v, want %v", c.s, c.network, c.addr, got, c.want)
		}
	}
}
