package plugin

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The watcher swaps in a binary written to the watched path.
func TestWatchTrigger(t *testing.T) {
	ev := newEvents()
	path := filepath.Join(t.TempDir(), "greeter")
	copyFile(t, bins["v1"], path)
	opts := baseOptions(t, path)
	opts.OnEvent = ev.on
	opts.Watch = true
	m := newManager(t, opts)
	ev.wait(t, EventSwapped)
	start := time.Now()
	copyFile(t, bins["v2"], path)
	e := ev.wait(t, EventSwapped)
	t.Logf("new binary to serving: %v (%s)", time.Since(start), e.Version)
	if v := versionFor(t, m, "k"); v != "v2" {
		t.Fatalf("after the watcher's swap: %s", v)
	}
	// A bad binary at the path is refused; v2 keeps answering.
	copyFile(t, bins["unhealthy"], path)
	ev.wait(t, EventRefused)
	if v := versionFor(t, m, "k"); v != "v2" {
		t.Fatalf("after a refused binary: %s", v)
	}
}

// A signal in Options.Signals reloads the path.
func TestSignalTrigger(t *testing.T) {
	ev := newEvents()
	path := filepath.Join(t.TempDir(), "greeter")
	copyFile(t, bins["v1"], path)
	opts := baseOptions(t, path)
	opts.OnEvent = ev.on
	opts.Signals = []os.Signal{syscall.SIGUSR2}
	m := newManager(t, opts)
	ev.wait(t, EventSwapped)
	copyFile(t, bins["v2"], path)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	ev.wait(t, EventSwapped)
	if v := versionFor(t, m, "k"); v != "v2" {
		t.Fatalf("after the signal: %s", v)
	}
}

// The plugin's stderr reaches the host's slog.
func TestPluginStderrInSlog(t *testing.T) {
	seen := make(chan struct{})
	var once sync.Once
	w := writerFunc(func(p []byte) (int, error) {
		if strings.Contains(string(p), "testplugin v1 starting") {
			once.Do(func() { close(seen) })
		}
		return len(p), nil
	})
	opts := baseOptions(t, bins["v1"])
	opts.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	newManager(t, opts)
	select {
	case <-seen:
	case <-time.After(30 * time.Second):
		t.Fatal("the plugin's stderr line did not reach the logger")
	}
}
