package plugin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/rpc"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// exitGrace bounds how long a call whose transport broke waits to learn
// whether the plugin process exited, to tell ErrPluginExited from other
// transport errors. Application errors never wait.
const exitGrace = time.Second

// instance is one running plugin process of a version.
type instance[T any] struct {
	v      *version
	client *goplugin.Client
	run    *procRunner
	impl   T
	pid    int
	since  time.Time // when it passed its health check

	socketDir string // go-plugin's directory for the plugin's unix socket

	// refs counts the routes, current or still leased, that hold the
	// instance; unref is closed when it drops to zero after a retirement.
	refs  atomic.Int32
	unref chan struct{}

	dead     atomic.Bool // the process exited
	retiring atomic.Bool // the manager is ending it: an exit is no crash
	killOnce sync.Once
}

// ctxMargin is how much longer than the caller's deadline go-plugin's own
// start timeout runs, so that the caller's deadline is what ends the start.
const ctxMargin = 250 * time.Millisecond

// start runs one process of v: exec (from the spawner thread, verified
// again), handshake, dispense, health check. On failure nothing is left
// running and the error is a *LoadError.
func (m *Manager[T]) start(ctx context.Context, v *version) (*instance[T], error) {
	timeout := m.opts.StartTimeout
	if d, ok := ctx.Deadline(); ok {
		if left := time.Until(d); left <= 0 {
			return nil, v.loadError(PhaseStart, context.DeadlineExceeded)
		} else if left < timeout {
			// ctx's deadline comes first and aborts the start, so that
			// the error says so; go-plugin's own timeout is the backstop.
			timeout = left + ctxMargin
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, v.loadError(PhaseStart, err)
	}
	inst := &instance[T]{v: v, unref: make(chan struct{})}
	err := m.launch(ctx, inst, timeout)
	phase := PhaseStart
	if err == nil {
		phase, err = m.connect(ctx, inst, timeout)
	}
	if err != nil {
		inst.discard()
		return nil, v.loadError(phase, err)
	}
	inst.since = time.Now()
	m.mu.Lock()
	v.info.PID = inst.pid
	m.mu.Unlock()
	m.wg.Add(1)
	go m.watchExit(inst)
	return inst, nil
}

// launch execs inst's binary through go-plugin and completes go-plugin's
// handshake, within timeout; ctx ending kills the process at once.
func (m *Manager[T]) launch(ctx context.Context, inst *instance[T], timeout time.Duration) error {
	v := inst.v
	var run atomic.Pointer[procRunner]
	cfg := &goplugin.ClientConfig{
		HandshakeConfig:  m.opts.Handshake,
		Plugins:          m.opts.Plugins,
		AllowedProtocols: m.opts.Protocols,
		StartTimeout:     timeout,
		Logger:           newHclog(m.log.With("version", v.id)),
		RunnerFunc: func(_ hclog.Logger, cmd *exec.Cmd, dir string) (runner.Runner, error) {
			inst.socketDir = dir
			r := newProcRunner(cmd, v.staged, m.opts.Args, v.sum, m.sp)
			inst.run = r
			run.Store(r)
			if ctx.Err() != nil {
				// ctx ended before the runner existed, so the AfterFunc
				// below found none to abort: the process is killed as
				// soon as it starts, rather than at go-plugin's timeout.
				r.abort()
			}
			return r, nil
		},
	}
	if p := m.priv.socketParent(); p != "" {
		cfg.UnixSocketConfig = &goplugin.UnixSocketConfig{TempDir: p}
	}
	inst.client = goplugin.NewClient(cfg)
	stopAbort := context.AfterFunc(ctx, func() {
		if r := run.Load(); r != nil {
			r.abort()
		}
	})
	_, err := inst.client.Start()
	if !stopAbort() || err != nil && ctx.Err() != nil {
		// ctx ended during the start and the process was killed: that,
		// not go-plugin's account of a vanished process, is the reason.
		err = fmt.Errorf("start aborted: %w", context.Cause(ctx))
	}
	if err != nil {
		return err
	}
	inst.pid = inst.run.pid
	return nil
}

// connect connects to the started plugin, dispenses Options.Name and runs
// the health check. It returns the phase that failed.
func (m *Manager[T]) connect(ctx context.Context, inst *instance[T], timeout time.Duration) (Phase, error) {
	proto, err := inst.client.Client()
	if err != nil {
		return PhaseDispense, err
	}
	raw, err := proto.Dispense(m.opts.Name)
	if err != nil {
		return PhaseDispense, err
	}
	impl, ok := raw.(T)
	if !ok {
		return PhaseDispense, fmt.Errorf("plugin %q dispensed %T, which is not a %T", m.opts.Name, raw, (*T)(nil))
	}
	inst.impl = impl
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := m.health(hctx, proto, impl); err != nil {
		return PhaseHealth, err
	}
	return "", nil
}

// discard ends an instance that failed to start.
func (inst *instance[T]) discard() {
	if inst.client != nil {
		inst.client.Kill()
	}
	if inst.socketDir != "" {
		_ = os.RemoveAll(inst.socketDir) // left behind by go-plugin when exec fails
	}
}

func (m *Manager[T]) health(ctx context.Context, proto goplugin.ClientProtocol, impl T) error {
	if m.opts.Health != nil {
		return m.opts.Health(ctx, impl)
	}
	// Ping takes no context; run it aside so ctx still bounds the wait. A
	// Ping left running ends when the failed start kills the process.
	done := make(chan error, 1)
	go func() { done <- proto.Ping() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// watchExit turns the exit of the process into a crash report, unless the
// manager is ending it.
func (m *Manager[T]) watchExit(inst *instance[T]) {
	defer m.wg.Done()
	<-inst.run.exited
	inst.dead.Store(true)
	if inst.retiring.Load() {
		return
	}
	select {
	case m.crashCh <- inst:
	case <-m.closed:
	}
}

// kill ends the process: go-plugin closes the connection, asks the plugin
// to stop, waits up to 2 s and kills it, then reaps it. Idempotent.
func (inst *instance[T]) kill() {
	inst.retiring.Store(true)
	inst.killOnce.Do(inst.client.Kill)
}

func (inst *instance[T]) addRef() { inst.refs.Add(1) }

func (inst *instance[T]) dropRef() {
	if inst.refs.Add(-1) == 0 {
		close(inst.unref)
	}
}

// classify wraps err with ErrPluginExited when the call failed because the
// process exited under it.
func (inst *instance[T]) classify(err error) error {
	if !inst.dead.Load() && !brokenTransport(err) {
		return err
	}
	t := time.NewTimer(exitGrace)
	defer t.Stop()
	select {
	case <-inst.run.exited:
		return fmt.Errorf("%w (version %s, pid %d): %w", ErrPluginExited, inst.v.id, inst.pid, err)
	case <-t.C:
		return err
	}
}

func brokenTransport(err error) bool {
	return status.Code(err) == codes.Unavailable || errors.Is(err, rpc.ErrShutdown) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// route is what one reload.Value version holds: the stable instance and,
// during a canary, the canary instance and its share of the keys.
type route[T any] struct {
	stable *instance[T]
	canary *instance[T]
	share  uint64 // of 10000
	trial  *trial
}

func (r *route[T]) id() string {
	if r.canary != nil {
		return r.stable.v.id + "+canary:" + r.canary.v.id
	}
	return r.stable.v.id
}

func (r *route[T]) ref() {
	r.stable.addRef()
	if r.canary != nil {
		r.canary.addRef()
	}
}

// release is the reload.Value's Release hook: the route is replaced and its
// last call has ended.
func (r *route[T]) release() {
	if r == nil {
		return
	}
	r.stable.dropRef()
	if r.canary != nil {
		r.canary.dropRef()
	}
}

// pick returns the instance for key, and the canary trial to record the
// outcome in when it is the canary. A dead canary sends its calls to the
// stable version until the manager rolls it back.
func (r *route[T]) pick(key string, rr *atomic.Uint64) (*instance[T], *trial) {
	if r.canary == nil || r.canary.dead.Load() {
		return r.stable, nil
	}
	var b uint64
	if key == "" {
		b = rr.Add(1) * 7919 // spread consecutive calls over the buckets
	} else {
		b = hashKey(key)
	}
	if b%10000 < r.share {
		return r.canary, r.trial
	}
	return r.stable, nil
}

// hashKey is FNV-1a (64 bits) with a final avalanche so that keys that
// differ only in their last byte land in unrelated buckets. It is stable
// across processes and versions: a key stays on its side of a canary split
// everywhere.
func hashKey(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

// version is the manager's record of one binary it loaded.
type version struct {
	id     string
	source string
	staged string            // set once staged
	sum    [sha256.Size]byte // set once staged
	info   Version           // guarded by Manager.mu
	calls  atomic.Int64      // Version.Calls
	errs   atomic.Int64      // Version.Errors
}

// loadError reports v refused at phase.
func (v *version) loadError(phase Phase, err error) *LoadError {
	le := &LoadError{Version: v.id, Path: v.source, Phase: phase, Err: err}
	if v.staged != "" {
		le.SHA256 = hex.EncodeToString(v.sum[:])
	}
	return le
}
