package plugin

import (
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/handoff-go/handoff/plugin/internal/testplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func answer(t *testing.T, m *Manager[testplugin.Greeter]) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var s string
	require.NoError(t, m.Call(ctx, "", func(g testplugin.Greeter) error {
		var err error
		s, err = g.Greet(ctx, "you")
		return err
	}), "the current version answers")
	return s
}

// Acceptance b: bad binaries are refused with a clear error and the current
// version keeps answering.
func TestRefused(t *testing.T) {
	b, err := os.ReadFile(bins["v1"])
	require.NoError(t, err)
	v1sum := sha256.Sum256(b)
	cases := []struct {
		name  string
		bin   string
		opts  func(*Options[testplugin.Greeter], string)
		phase Phase
		is    error      // nil: the phase says it all
		code  codes.Code // of a gRPC status the plugin answered
	}{
		{name: "garbage", bin: "garbage", phase: PhaseStart, is: errNotExecutable},
		// go-plugin reports a failed handshake only as text ("plugin
		// exited before we could connect"): the phase is what to check.
		{name: "handshake", bin: "badhandshake", phase: PhaseStart},
		// The plugin's Health error crosses gRPC as a status.
		{name: "health", bin: "unhealthy", phase: PhaseHealth, code: codes.FailedPrecondition},
		{
			name: "checksum", bin: "v2", phase: PhaseStage, is: ErrChecksum,
			opts: func(o *Options[testplugin.Greeter], _ string) { o.Checksums = [][]byte{v1sum[:]} },
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
					assert.NoError(t, os.Chmod(staged, 0o755))
					f, err := os.OpenFile(staged, os.O_WRONLY|os.O_APPEND, 0)
					if !assert.NoError(t, err) {
						return
					}
					_, err = f.WriteString("tampered")
					assert.NoError(t, err)
					assert.NoError(t, f.Close())
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
			require.ErrorAs(t, err, &le)
			t.Logf("refused: %v", err)
			assert.Equal(t, c.phase, le.Phase)
			assert.Equal(t, path, le.Path)
			if c.is != nil {
				assert.ErrorIs(t, err, c.is)
			}
			if c.code != codes.OK {
				assert.Equal(t, c.code, status.Code(err))
			}
			assert.Equal(t, "v1:hello you", before)
			assert.Equal(t, before, answer(t, m), "the answer after the refusal")
			assert.Equal(t, 1, ev.count(EventRefused), "refused events")
			vs := m.Versions()
			require.Len(t, vs, 2)
			assert.Equal(t, StateRefused, vs[0].State)
			assert.Error(t, vs[0].Err)
			assert.Equal(t, StateServing, vs[1].State)
			if kids := children(); kids != nil {
				assert.Len(t, kids, 1, "plugin processes: the serving one only")
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
	require.ErrorAs(t, err, &le, "a hanging plugin")
	assert.Equal(t, PhaseStart, le.Phase)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	t.Logf("refused: %v", err)
	require.Equal(t, "v1:hello you", answer(t, m))

	staged := ev.count(EventStaged)
	errc := make(chan error, 1)
	go func() { _, err := m.Swap(context.Background(), bins["hang"]); errc <- err }()
	require.Eventually(t, func() bool { return ev.count(EventStaged) > staged }, 30*time.Second, time.Millisecond)
	start := time.Now()
	require.NoError(t, m.Close())
	t.Logf("Close during a hanging start took %v", time.Since(start))
	select {
	case err := <-errc:
		require.ErrorIs(t, err, context.Canceled, "the swap of a hanging plugin, ended by Close")
		t.Logf("swap: %v", err)
	case <-time.After(30 * time.Second):
		require.FailNow(t, "swap still running after Close")
	}
	require.Empty(t, children(), "processes left")
}
