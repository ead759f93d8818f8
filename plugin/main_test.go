package plugin

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoff-go/handoff/plugin/internal/testplugin"
	"go.uber.org/goleak"
)

// bins holds the plugin binaries TestMain builds: one per variant, plus a
// garbage file.
var bins = map[string]string{}

var variants = []string{"v1", "v2", "unhealthy", "erroring", "badhandshake", "hang"}

const roleEnv = "HANDOFF_PLUGIN_TEST_ROLE"

func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "host" {
		runHost()
		return
	}
	dir, err := os.MkdirTemp("", "handoff-plugin-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if err := buildPlugins(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	// No goroutine needs ignoring: go-plugin's client goroutines (stderr
	// and stdout readers, process waiter, gRPC broker and stdio streams) all
	// end once Client.Kill has closed the connection and reaped the
	// process, and the Manager kills every client it starts before Close
	// returns.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))
}

func buildPlugins(dir string) error {
	const pkg = "github.com/handoff-go/handoff/plugin/internal/testplugin/testpluginmain"
	for _, v := range variants {
		out := filepath.Join(dir, v)
		cmd := exec.Command("go", "build", "-o", out, "-ldflags", "-X main.variant="+v, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build plugin %s: %v\n%s", v, err, b)
		}
		bins[v] = out
	}
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, bytes.Repeat([]byte("not an executable\n"), 100), 0o755); err != nil {
		return err
	}
	bins["garbage"] = garbage
	return nil
}

// runHost is the test binary re-executed as a plugin host that the test
// then kills with SIGKILL: it starts the plugin, prints its pid, and waits.
func runHost() {
	m, err := New(context.Background(), Options[testplugin.Greeter]{
		Handshake: testplugin.Handshake,
		Plugins:   testplugin.Plugins(nil),
		Path:      os.Getenv("HANDOFF_PLUGIN_TEST_BIN"),
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cur, _, _ := m.Current()
	fmt.Printf("pid %d\n", cur.PID)
	// Wait to be killed; bounded so a broken test leaves no host behind.
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
	}
	m.Close()
	os.Exit(0)
}

// copyFile copies a binary to dst atomically (write aside, rename), as a
// deploy would.
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// testLogger sends the manager's records to t.Log at Info and above, so a
// failing test shows them.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func baseOptions(t testing.TB, path string) Options[testplugin.Greeter] {
	return Options[testplugin.Greeter]{
		Handshake: testplugin.Handshake,
		Plugins:   testplugin.Plugins(nil),
		Path:      path,
		StageDir:  t.TempDir(),
		Logger:    testLogger(t),
		Health:    func(ctx context.Context, g testplugin.Greeter) error { return g.Health(ctx) },
	}
}

func newManager(t testing.TB, opts Options[testplugin.Greeter]) *Manager[testplugin.Greeter] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		if kids := children(t); len(kids) > 0 {
			t.Errorf("plugin processes left after Close: %v", kids)
		}
	})
	return m
}

// events collects a manager's events for a test.
type events struct {
	mu  sync.Mutex
	all []Event
	ch  chan Event
}

func newEvents() *events { return &events{ch: make(chan Event, 4096)} }

func (e *events) on(ev Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
	select {
	case e.ch <- ev:
	default:
	}
}

// wait returns the next event of kind, failing the test after 30 s.
func (e *events) wait(t testing.TB, kind EventKind) Event {
	t.Helper()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case ev := <-e.ch:
			if ev.Kind == kind {
				return ev
			}
		case <-timeout.C:
			t.Fatalf("no %s event within 30s", kind)
		}
	}
}

func (e *events) count(kind EventKind) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

// children lists the live child processes of the test process.
func children(t testing.TB) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	self := os.Getpid()
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, state, ok := procStat(pid)
		if ok && ppid == self && state != "Z" {
			out = append(out, pid)
		}
	}
	return out
}

// procStat reads the parent pid and state of pid from /proc/<pid>/stat.
func procStat(pid int) (ppid int, state string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, "", false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0], err == nil
}

// readLine reads one line from r with a deadline.
func readLine(t testing.TB, r io.Reader) string {
	t.Helper()
	ch := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		ch <- line
	}()
	select {
	case l := <-ch:
		return strings.TrimSpace(l)
	case <-time.After(30 * time.Second):
		t.Fatal("no line within 30s")
		return ""
	}
}
