package plugin

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoff-go/handoff/internal/proc"
	"github.com/handoff-go/handoff/plugin/internal/testplugin"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// bins holds the plugin binaries TestMain builds: one per variant, plus a
// garbage file.
var bins = map[string]string{}

var variants = []string{"v1", "v2", "unhealthy", "erroring", "badhandshake", "hang"}

// The test binary re-executed as a plugin host (see runHost).
const (
	roleEnv   = "HANDOFF_PLUGIN_TEST_ROLE"
	hostBin   = "HANDOFF_PLUGIN_TEST_BIN"
	hostStays = 60 * time.Second // bound on a host's life, should a test not end it
)

// TestMain builds the plugin variants, then runs the tests with TMPDIR set
// to a directory of its own, so that every Manager's private directory,
// go-plugin's socket directories and t.TempDir() land there; the run fails
// if anything is left in it.
func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "host" {
		runHost()
		return
	}
	// Short names: a Manager's private directory under tmp must leave room
	// for go-plugin's socket path within sockaddr_un's 104 bytes (see
	// socketParent), or the sockets of a host the tests kill land in tmp
	// itself, and stay there, when TMPDIR is itself a longer path.
	root, err := os.MkdirTemp("", "hpt-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	tmp := filepath.Join(root, "t")
	err = os.Mkdir(tmp, 0o700)
	if err == nil {
		err = buildPlugins(filepath.Join(root, "bin"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(root)
		os.Exit(2)
	}
	os.Setenv("TMPDIR", tmp)
	// No goroutine needs ignoring: go-plugin's client goroutines (stderr
	// and stdout readers, process waiter, gRPC broker and stdio streams) all
	// end once Client.Kill has closed the connection and reaped the
	// process, and the Manager kills every client it starts before Close
	// returns.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		if left, _ := os.ReadDir(tmp); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "the tests left %d entries in the temporary directory:", len(left))
			for _, e := range left {
				fmt.Fprintf(os.Stderr, " %s", e.Name())
			}
			fmt.Fprintln(os.Stderr)
			code = max(code, 1)
		}
		os.RemoveAll(root)
		os.Exit(code)
	}))
}

func buildPlugins(dir string) error {
	const pkg = "github.com/handoff-go/handoff/plugin/internal/testplugin/testpluginmain"
	for _, v := range variants {
		out := filepath.Join(dir, v)
		cmd := exec.Command("go", "build", "-o", out, "-ldflags", "-X main.variant="+v, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build plugin %s: %w\n%s", v, err, b)
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

// runHost is the test binary re-executed as a plugin host: it starts the
// plugin at $HANDOFF_PLUGIN_TEST_BIN, prints the plugin's pid and its
// private directory, and serves until its stdin closes (then it closes the
// Manager and exits 0) or it is killed.
func runHost() {
	m, err := New(context.Background(), Options[testplugin.Greeter]{
		Handshake: testplugin.Handshake,
		Plugins:   testplugin.Plugins(nil),
		Path:      os.Getenv(hostBin),
		Logger:    slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cur, _, _ := m.Current()
	fmt.Printf("%d %s\n", cur.PID, m.priv.path)
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-time.After(hostStays):
	}
	if err := m.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// copyFile copies a binary to dst atomically (write aside, rename), as a
// deploy would.
func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	tmp := dst + ".tmp"
	require.NoError(t, os.WriteFile(tmp, b, 0o755))
	require.NoError(t, os.Rename(tmp, dst))
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

// newManager starts a Manager closed at the end of the test, which then
// checks that no plugin process is left.
func newManager(t testing.TB, opts Options[testplugin.Greeter]) *Manager[testplugin.Greeter] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := New(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if kids := children(); len(kids) > 0 {
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
	return e.waitFor(t, kind, func(Event) bool { return true })
}

// waitFor returns the next event of kind for which match is true, failing
// the test after 30 s.
func (e *events) waitFor(t testing.TB, kind EventKind, match func(Event) bool) Event {
	t.Helper()
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case ev := <-e.ch:
			if ev.Kind == kind && match(ev) {
				return ev
			}
		case <-timeout.C:
			require.FailNow(t, "no event", "no such %s event within 30s", kind)
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

func (e *events) list() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.all...)
}

// children lists the live (not zombie) child processes of the test
// process; nil where internal/proc cannot tell (outside Linux).
func children() []int {
	var out []int
	for _, pid := range proc.Children(os.Getpid()) {
		if st, err := proc.ReadStat(pid); err == nil && st.State != 'Z' {
			out = append(out, pid)
		}
	}
	return out
}
