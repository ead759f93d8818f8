package main

import (
	"context"
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
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// build builds the example plugin as version to dst, as the README does
// (to a temporary name, then renamed into place).
func build(t *testing.T, version, dst string) {
	t.Helper()
	tmp := dst + ".new"
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version="+version, "-o", tmp, "./plugin")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", version, err, out)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

func get(c *http.Client, url string) (string, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", "", &httpError{resp.StatusCode, string(b)}
	}
	return strings.TrimSpace(string(b)), resp.Header.Get("X-Plugin-Version"), err
}

type httpError struct {
	code int
	body string
}

func (e *httpError) Error() string { return e.body }

// The README's flow: v1 serves; v2 is built to the watched path; it swaps in
// while requests keep coming, none failing.
func TestSwapInV2(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "greeter")
	build(t, "v1", bin)

	swapped := make(chan plugin.Event, 16)
	onEvent := func(e plugin.Event) {
		if e.Kind == plugin.EventSwapped {
			swapped <- e
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, h, err := newHost(ctx, bin, 0, log, onEvent)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	<-swapped // the first version
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := srv.Client()

	body, ver, err := get(c, srv.URL+"/?name=Ann")
	if err != nil || body != "Hello, Ann!" || ver != "v1" {
		t.Fatalf("v1 answered %q (%s), %v", body, ver, err)
	}

	var stop atomic.Bool
	var failed, calls atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 100_000 && !stop.Load(); n++ {
				if _, _, err := get(c, srv.URL+"/?name=Bob"); err != nil {
					failed.Add(1)
					t.Log(err)
				}
				calls.Add(1)
			}
		}()
	}
	build(t, "v2", bin)
	select {
	case <-swapped:
	case <-ctx.Done():
		t.Fatal("v2 was not swapped in")
	}
	body, ver, err = get(c, srv.URL+"/?name=Ann")
	stop.Store(true)
	wg.Wait()
	if err != nil || body != "Hello, Ann! (greeted by v2)" || ver != "v2" {
		t.Fatalf("v2 answered %q (%s), %v", body, ver, err)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during the swap", failed.Load(), calls.Load())
	}
	t.Logf("%d requests during the swap, none failed", calls.Load())
	if _, _, err := get(c, srv.URL+"/versions"); err != nil {
		t.Fatal(err)
	}
}
