//go:build unix

package main

import (
	"bufio"
	"fmt"
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

// mainEnv makes the test binary run main instead of the tests: the
// example runs as a process of its own (handoff.Run is once per process).
const mainEnv = "HANDOFF_EXAMPLE_FLAGS_MAIN"

// waitLimit bounds every wait; generous, because the machine is shared.
const waitLimit = 20 * time.Second

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		main()
		return
	}
	goleak.VerifyTestMain(m)
}

// server is the example running as a process.
type server struct {
	t       *testing.T
	cmd     *exec.Cmd
	pidFile string
	url     string
	client  *http.Client

	mu      sync.Mutex
	records []map[string]string
	changed chan struct{}
	gone    chan struct{}
}

var attrRE = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S*)`)

func start(t *testing.T, path string) *server {
	t.Helper()
	s := &server{t: t, pidFile: filepath.Join(t.TempDir(), "flags.pid"), client: &http.Client{Transport: &http.Transport{}},
		changed: make(chan struct{}), gone: make(chan struct{})}
	s.cmd = exec.Command(os.Args[0], "-addr", "127.0.0.1:0", "-pidfile", s.pidFile, "-flags", path)
	s.cmd.Env = append(os.Environ(), mainEnv+"=1")
	r, w, err := os.Pipe()
	require.NoError(t, err)
	s.cmd.Stdout, s.cmd.Stderr = w, w
	require.NoError(t, s.cmd.Start())
	w.Close()
	go s.read(r)
	t.Cleanup(s.stop)
	s.url = "http://" + s.wait("handoff: serving", nil)["addr"]
	return s
}

func (s *server) read(r *os.File) {
	defer r.Close()
	defer close(s.gone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		s.t.Log(sc.Text())
		rec := map[string]string{}
		for _, m := range attrRE.FindAllStringSubmatch(sc.Text(), -1) {
			v := m[2]
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			rec[m[1]] = v
		}
		s.mu.Lock()
		s.records = append(s.records, rec)
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
}

// wait returns the first record with message msg and every attribute of
// want, waiting for it if need be.
func (s *server) wait(msg string, want map[string]string) map[string]string {
	s.t.Helper()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for {
		s.mu.Lock()
		changed := s.changed
		for _, r := range s.records {
			ok := r["msg"] == msg
			for k, v := range want {
				ok = ok && r[k] == v
			}
			if ok {
				s.mu.Unlock()
				return r
			}
		}
		s.mu.Unlock()
		select {
		case <-changed:
		case <-s.gone:
			require.FailNow(s.t, "no record", "%q %v: the server has exited", msg, want)
		case <-timer.C:
			require.FailNow(s.t, "no record", "%q %v within %v", msg, want, waitLimit)
		}
	}
}

func (s *server) pid() int {
	b, err := os.ReadFile(s.pidFile)
	require.NoError(s.t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(s.t, err)
	return pid
}

func (s *server) stop() {
	s.client.CloseIdleConnections()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.gone:
	case <-time.After(waitLimit):
		assert.Fail(s.t, "still running", "the server did not exit within %v of SIGTERM", waitLimit)
		_ = s.cmd.Process.Kill()
	}
	assert.NoError(s.t, s.cmd.Wait())
}

// answers asks for users user-0 … user-(n-1) and counts the answers:
// new checkouts and green buttons.
func (s *server) answers(n int) (newCheckout, green int) {
	s.t.Helper()
	for i := range n {
		resp, err := s.client.Get(fmt.Sprintf("%s/?user=user-%d", s.url, i))
		require.NoError(s.t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(s.t, err)
		require.Equal(s.t, http.StatusOK, resp.StatusCode, "%s", b)
		if strings.Contains(string(b), "new checkout") {
			newCheckout++
		}
		if strings.Contains(string(b), "green button") {
			green++
		}
	}
	return newCheckout, green
}

// replace writes content next to path and renames it into place.
func replace(t *testing.T, path, content string) {
	require.NoError(t, os.WriteFile(path+".tmp", []byte(content), 0o644))
	require.NoError(t, os.Rename(path+".tmp", path))
}

// TestRollout is the README's walk-through: 10 %, then everyone by
// editing the file, a mistake refused, then off again through SIGUSR2.
func TestRollout(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flags.json")
	sample, err := os.ReadFile("flags.json")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, sample, 0o644))
	s := start(t, path)

	const users = 1000
	on, green := s.answers(users)
	t.Logf("10 %%: %d of %d users have the new checkout, %d of them a green button", on, users, green)
	assert.InDelta(t, users/10, on, users/30)

	replace(t, path, `{"new-checkout": true, "button-color": {"weights": {"blue": 50, "green": 50}}}`)
	s.wait("reload: swap", map[string]string{"seq": "3"})
	on, green = s.answers(users)
	t.Logf("everyone: %d of %d users have the new checkout, %d a green button", on, users, green)
	assert.Equal(t, users, on)
	assert.InDelta(t, users/2, green, users/20)

	replace(t, path, `{"new-checkout": {"percent": 120}}`)
	failure := s.wait("reload: failure", nil)
	assert.Contains(t, failure["error"], path+`: flag "new-checkout": percent 120 is not within 0–100`)
	on, _ = s.answers(100)
	assert.Equal(t, 100, on, "the refused file does not serve")

	replace(t, path, `{"new-checkout": false}`)
	require.NoError(t, syscall.Kill(s.pid(), syscall.SIGUSR2))
	s.wait("signal: reload finished", nil)
	s.wait("reload: swap", map[string]string{"seq": "4"})
	on, _ = s.answers(100)
	assert.Zero(t, on)
}
