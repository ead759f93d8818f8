//go:build unix

package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// mainEnv makes the test binary run main instead of the tests: each test
// starts the example as a process of its own (handoff.Run is once per
// process), and its upgrades re-execute the same binary, which inherits
// the environment.
const mainEnv = "HANDOFF_EXAMPLE_BUNDLE_MAIN"

// waitLimit bounds every wait; generous, because the machine is shared.
const waitLimit = 20 * time.Second

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		main()
		return
	}
	goleak.VerifyTestMain(m)
}

// server is the example running as processes: its first generation, a
// child of the test, and the generations its upgrades start.
type server struct {
	t       *testing.T
	cmd     *exec.Cmd
	pidFile string
	url     string
	client  *http.Client

	mu      sync.Mutex
	records []record
	changed chan struct{} // closed and replaced on each record
	gone    chan struct{} // closed when every process has closed its stderr: all exited
}

// record is one log line: its message and attributes.
type record struct {
	msg   string
	attrs map[string]string
}

var attrRE = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

func parseRecord(line string) record {
	r := record{attrs: map[string]string{}}
	for _, m := range attrRE.FindAllStringSubmatch(line, -1) {
		v := m[2]
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		}
		r.attrs[m[1]] = v
	}
	r.msg = r.attrs["msg"]
	return r
}

// start runs the example with args, waits until it serves, and stops it
// (SIGTERM to the generation in charge) when the test ends.
func start(t *testing.T, args ...string) *server {
	t.Helper()
	s := &server{
		t: t, pidFile: filepath.Join(t.TempDir(), "bundle.pid"), client: &http.Client{Transport: &http.Transport{}},
		changed: make(chan struct{}), gone: make(chan struct{}),
	}
	s.cmd = exec.Command(os.Args[0], append([]string{"-addr", "127.0.0.1:0", "-pidfile", s.pidFile}, args...)...)
	s.cmd.Env = append(os.Environ(), mainEnv+"=1")
	r, w, err := os.Pipe()
	require.NoError(t, err)
	s.cmd.Stdout, s.cmd.Stderr = w, w // every generation inherits them
	require.NoError(t, s.cmd.Start())
	w.Close()
	go s.read(r)
	t.Cleanup(s.stop)
	serving := s.wait("handoff: serving", nil)
	s.url = "http://" + serving.attrs["addr"]
	return s
}

func (s *server) read(r *os.File) {
	defer r.Close()
	defer close(s.gone)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		s.t.Log(sc.Text())
		s.mu.Lock()
		s.records = append(s.records, parseRecord(sc.Text()))
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
}

// wait returns the first record with message msg (and every attribute of
// want), waiting for it if need be.
func (s *server) wait(msg string, want map[string]string) record {
	s.t.Helper()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for {
		s.mu.Lock()
		changed := s.changed
		for _, r := range s.records {
			if r.msg == msg && matches(r, want) {
				s.mu.Unlock()
				return r
			}
		}
		s.mu.Unlock()
		select {
		case <-changed:
		case <-s.gone:
			require.FailNow(s.t, "no record", "%q %v: every process has exited", msg, want)
		case <-timer.C:
			require.FailNow(s.t, "no record", "%q %v within %v", msg, want, waitLimit)
		}
	}
}

func matches(r record, want map[string]string) bool {
	for k, v := range want {
		if r.attrs[k] != v {
			return false
		}
	}
	return true
}

// pid reads the PID file: the generation in charge.
func (s *server) pid() int {
	s.t.Helper()
	b, err := os.ReadFile(s.pidFile)
	require.NoError(s.t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(s.t, err)
	return pid
}

func (s *server) signal(sig syscall.Signal) {
	s.t.Helper()
	require.NoError(s.t, syscall.Kill(s.pid(), sig))
}

// stop sends SIGTERM to the generation in charge and waits until every
// generation has exited; past waitLimit it kills those it knows of.
func (s *server) stop() {
	s.client.CloseIdleConnections()
	if pid, err := os.ReadFile(s.pidFile); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(pid))); err == nil {
			_ = syscall.Kill(n, syscall.SIGTERM)
		}
	} else {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-s.gone:
	case <-time.After(waitLimit):
		assert.Fail(s.t, "still running", "a generation did not exit within %v of SIGTERM", waitLimit)
		s.mu.Lock()
		for _, r := range s.records {
			if n, err := strconv.Atoi(r.attrs["pid"]); err == nil {
				_ = syscall.Kill(n, syscall.SIGKILL)
			}
		}
		s.mu.Unlock()
	}
	assert.NoError(s.t, s.cmd.Wait(), "first generation")
}

func (s *server) get(path string) string {
	s.t.Helper()
	resp, err := s.client.Get(s.url + path)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	require.Equal(s.t, http.StatusOK, resp.StatusCode, "%s: %s", path, b)
	return string(b)
}

// writeZip writes a bundle whose index.html says index, the deploy way:
// next to the live one, then renamed into place.
func writeZip(t *testing.T, path, index string) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, data := range map[string]string{
		"index.html":                index,
		"assets/app-3f2a9c1b.js":    "console.log(1)",
		"assets/style-8d1e4c2a.css": "body{}",
	} {
		f, err := zw.Create(name)
		require.NoError(t, err)
		_, err = f.Write([]byte(data))
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	require.NoError(t, os.WriteFile(path+".new", buf.Bytes(), 0o644))
	require.NoError(t, os.Rename(path+".new", path))
}

func TestServesSampleSite(t *testing.T) {
	s := start(t, "-bundle", "site")
	assert.Contains(t, s.get("/"), "bundle v1")
	assert.Contains(t, s.get("/assets/app-3f2a9c1b.js"), "location.pathname")
	assert.Contains(t, s.get("/some/client/route"), "bundle v1", "SPA fallback")
	assert.Contains(t, s.get("/-/bundle"), `"Current":true`)
}

func TestSwapsOnFileChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.zip")
	writeZip(t, path, "<h1>one</h1>")
	s := start(t, "-bundle", path, "-debounce", "100ms")
	assert.Equal(t, "<h1>one</h1>", s.get("/"))
	writeZip(t, path, "<h1>two</h1>")
	s.wait("reload: swap", map[string]string{"seq": "2"})
	assert.Equal(t, "<h1>two</h1>", s.get("/"))
}

func TestSwapsOnSIGUSR2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.zip")
	writeZip(t, path, "<h1>one</h1>")
	// A debounce far longer than the test: only SIGUSR2 can load "two".
	s := start(t, "-bundle", path, "-debounce", "1h")
	writeZip(t, path, "<h1>two</h1>")
	assert.Equal(t, "<h1>one</h1>", s.get("/"), "swapped before SIGUSR2")
	s.signal(syscall.SIGUSR2)
	s.wait("reload: swap", map[string]string{"seq": "2"})
	assert.Equal(t, "<h1>two</h1>", s.get("/"))
}

// TestUpgradeOnSIGHUP: SIGHUP starts a new generation of the binary, which
// loads the bundle, takes the socket over and handles SIGUSR2 from then
// on; the old generation drains and exits.
func TestUpgradeOnSIGHUP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.zip")
	writeZip(t, path, "<h1>one</h1>")
	s := start(t, "-bundle", path, "-debounce", "1h")
	first := s.pid()
	s.signal(syscall.SIGHUP)
	s.wait("handoff: exiting", map[string]string{"pid": strconv.Itoa(first)})
	second := s.pid()
	require.NotEqual(t, first, second, "the PID file names the new generation")
	assert.Equal(t, "<h1>one</h1>", s.get("/"), "served by the new generation")

	writeZip(t, path, "<h1>two</h1>")
	s.signal(syscall.SIGUSR2)
	s.wait("reload: swap", map[string]string{"pid": strconv.Itoa(second), "seq": "2"})
	assert.Equal(t, "<h1>two</h1>", s.get("/"))
}
