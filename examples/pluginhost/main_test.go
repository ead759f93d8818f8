package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-go/handoff/plugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// plugins holds the example plugin built as v1 and v2 by TestMain.
var plugins = map[string]string{}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pluginhost-test-")
	if err == nil {
		err = buildPlugins(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// buildPlugins builds the example plugin as v1 and v2, as the README does.
func buildPlugins(dir string) error {
	for _, v := range []string{"v1", "v2"} {
		out := filepath.Join(dir, v)
		cmd := exec.Command("go", "build", "-ldflags", "-X main.version="+v, "-o", out, "./plugin")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build plugin %s: %w\n%s", v, err, b)
		}
		plugins[v] = out
	}
	return nil
}

// install puts the plugin built as version at dst as a deploy does: a copy
// beside it, renamed into place, so that no watcher sees half a file.
func install(t *testing.T, version, dst string) {
	t.Helper()
	b, err := os.ReadFile(plugins[version])
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dst+".new", b, 0o755))
	require.NoError(t, os.Rename(dst+".new", dst))
}

// answer is one response of GET /?name=...
type answer struct {
	body, version, hostPID string
}

func get(c *http.Client, url string) (answer, error) {
	resp, err := c.Get(url)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return answer{}, fmt.Errorf("%s: %s", resp.Status, b)
	}
	return answer{strings.TrimSpace(string(b)), resp.Header.Get("X-Plugin-Version"), resp.Header.Get("X-Host-Pid")}, nil
}

// traffic sends requests from a few clients until stopped, and counts them
// and the failed ones.
type traffic struct {
	calls, failed atomic.Int64
	first         atomic.Value
	stop          atomic.Bool
	wg            sync.WaitGroup
}

func startTraffic(c *http.Client, url string) *traffic {
	tr := &traffic{}
	for range 4 {
		tr.wg.Add(1)
		go func() {
			defer tr.wg.Done()
			for n := 0; n < 1_000_000 && !tr.stop.Load(); n++ {
				if _, err := get(c, url); err != nil {
					tr.failed.Add(1)
					tr.first.CompareAndSwap(nil, err)
				}
				tr.calls.Add(1)
			}
		}()
	}
	return tr
}

func (tr *traffic) end(t *testing.T) {
	t.Helper()
	tr.stop.Store(true)
	tr.wg.Wait()
	t.Logf("%d requests, %d failed", tr.calls.Load(), tr.failed.Load())
	assert.Zero(t, tr.failed.Load(), "failed requests; first: %v", tr.first.Load())
	assert.NotZero(t, tr.calls.Load())
}

// waitVersion polls until the plugin version answering is want.
func waitVersion(t *testing.T, c *http.Client, url, want string) answer {
	t.Helper()
	var a answer
	require.Eventually(t, func() bool {
		var err error
		a, err = get(c, url)
		return err == nil && a.version == want
	}, 60*time.Second, 20*time.Millisecond, "no answer from the plugin %s", want)
	return a
}

// The README's watched flow, in process: v1 serves; v2 is installed at the
// watched path; Watch swaps it in while requests keep coming, none failing;
// /versions shows both, with readable durations.
func TestWatchSwapsV2(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "greeter")
	install(t, "v1", bin)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	unchanged := make(chan struct{}, 1)
	onEvent := func(e plugin.Event) {
		if e.Kind == plugin.EventUnchanged {
			select {
			case unchanged <- struct{}{}:
			default:
			}
		}
	}
	m, h, err := newHost(ctx, bin, 0, log, onEvent)
	require.NoError(t, err)
	defer func() { assert.NoError(t, m.Close()) }()
	watched := make(chan error, 1)
	go func() { watched <- m.Watch(ctx) }()
	select {
	case <-unchanged: // Watch's first load: v1 still
	case <-ctx.Done():
		require.FailNow(t, "Watch did not start")
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := srv.Client()

	a, err := get(c, srv.URL+"/?name=Ann")
	require.NoError(t, err)
	assert.Equal(t, answer{"Hello, Ann!", "v1", fmt.Sprint(os.Getpid())}, a)

	tr := startTraffic(c, srv.URL+"/?name=Bob")
	install(t, "v2", bin)
	a = waitVersion(t, c, srv.URL+"/?name=Ann", "v2")
	tr.end(t)
	assert.Equal(t, "Hello, Ann! (greeted by v2)", a.body)

	resp, err := c.Get(srv.URL + "/versions")
	require.NoError(t, err)
	defer resp.Body.Close()
	var vs []map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&vs))
	require.Len(t, vs, 2)
	assert.Equal(t, "serving", vs[0]["state"])
	assert.Equal(t, "retired", vs[1]["state"])
	for _, v := range vs {
		for _, k := range []string{"stage", "start"} {
			d, err := time.ParseDuration(fmt.Sprint(v[k]))
			assert.NoError(t, err, "%s of %s: %v", k, v["id"], v[k])
			assert.Positive(t, d)
		}
	}

	cancel()
	require.NoError(t, <-watched)
	require.NoError(t, m.Close())
	require.ErrorIs(t, m.Watch(context.Background()), plugin.ErrClosed)
}
