package plugin

import (
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-go/handoff/plugin/internal/testplugin"
)

func answer(t *testing.T, m *Manager[testplugin.Greeter]) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var s string
	if err := m.Call(ctx, "", func(g testplugin.Greeter) error {
		var err error
		s, err = g.Greet(ctx, "you")
		return err
	}); err != nil {
		t.Fatalf("current version does not answer: %v", err)
	}
	return s
}

// Acceptance b: bad binaries are refused with a clear error and the current
// version keeps answering.
func TestRefused(t *testing.T) {
	v1sum := func() []byte {
		b, err := os.ReadFile(bins["v1"])
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		return s[:]
	}()
	cases := []struct {
		name    string
		bin     string
		opts    func(*Options[testplugin.Greeter], string)
		phase   Phase
		is      error
		message string
	}{
		{name: "garbage", bin: "garbage", phase: PhaseStart, message: "exec format error"},
		{name: "handshake", bin: "badhandshake", phase: PhaseStart, message: "handshake"},
		{name: "health", bin: "unhealthy", phase: PhaseHealth, message: "unhealthy"},
		{
			name: "checksum", bin: "v2", phase: PhaseStage, is: ErrChecksum,
			opts: func(o *Options[testplugin.Greeter], _ string) { o.Checksums = [][]byte{v1sum} },
		},
		{
			// The file at the path is replaced (renamed over) while it is
			// being copied to the staging directory.
			name: "replaced while staged", bin: "v2", phase: PhaseStage, is: ErrChanged,
			opts: func(o *Options[testplugin.Greeter], path string) {
				o.hooks.afterCopy = func(src string) {
					if src == path {
						copyFile(t, bins["erroring"], path)
					}
				}
			},
		},
		{
			// The staged copy is modified after staging: the fresh hash
			// taken right before exec refuses it.
			name: "staged copy modified", bin: "v2", phase: PhaseStart, is: ErrChecksum,
			opts: func(o *Options[testplugin.Greeter], path string) {
				o.hooks.afterStage = func(src, staged string) {
					if src != path {
						return
					}
					if err := os.Chmod(staged, 0o755); err != nil {
						t.Error(err)
					}
					f, err := os.OpenFile(staged, os.O_WRONLY|os.O_APPEND, 0)
					if err != nil {
						t.Error(err)
						return
					}
					f.WriteString("tampered")
					f.Close()
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := newEvents()
			opts := baseOptions(t, bins["v1"])
			opts.OnEvent = ev.on
			// The candidate sits at its own path, so hooks can tell it apart.
			path := filepath.Join(t.TempDir(), "candidate")
			copyFile(t, bins[c.bin], path)
			if c.opts != nil {
				c.opts(&opts, path)
			}
			m := newManager(t, opts)
			before := answer(t, m)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := m.Swap(ctx, path)
			var le *LoadError
			if !errors.As(err, &le) {
				t.Fatalf("Swap: %v, want a *LoadError", err)
			}
			t.Logf("refused: %v", err)
			if le.Phase != c.phase {
				t.Errorf("phase %s, want %s", le.Phase, c.phase)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error does not wrap %v", c.is)
			}
			if c.message != "" && !strings.Contains(err.Error(), c.message) {
				t.Errorf("error %q does not mention %q", err, c.message)
			}
			if after := answer(t, m); after != before || before != "v1:hello you" {
				t.Errorf("answer %q before, %q after", before, after)
			}
			if n := ev.count(EventRefused); n != 1 {
				t.Errorf("%d refused events", n)
			}
			vs := m.Versions()
			if vs[0].State != StateRefused || vs[0].Err == nil || vs[1].State != StateServing {
				t.Errorf("versions: %+v", vs)
			}
			if kids := children(t); len(kids) != 1 {
				t.Errorf("%d plugin processes, want the serving one only", len(kids))
			}
		})
	}
}

// A start that hangs in the handshake ends with the caller's deadline, and
// Close during a start does not wait for go-plugin's StartTimeout.
func TestStartCancelled(t *testing.T) {
	ev := newEvents()
	opts := baseOptions(t, bins["v1"])
	opts.OnEvent = ev.on
	m := newManager(t, opts)

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err := m.Swap(ctx, bins["hang"])
	cancel()
	var le *LoadError
	if !errors.As(err, &le) || le.Phase != PhaseStart || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hanging plugin: %v", err)
	}
	t.Logf("refused: %v", err)
	if got := answer(t, m); got != "v1:hello you" {
		t.Fatalf("answer %q", got)
	}

	errc := make(chan error, 1)
	go func() { _, err := m.Swap(context.Background(), bins["hang"]); errc <- err }()
	ev.wait(t, EventStaged)
	start := time.Now()
	m.Close()
	t.Logf("Close during a hanging start took %v", time.Since(start))
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("swap of a hanging plugin succeeded")
		}
		t.Logf("swap: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("swap still running after Close")
	}
	if kids := children(t); len(kids) != 0 {
		t.Fatalf("processes left: %v", kids)
	}
}
