package plugin

import (
	"context"
	"crypto/sha256"
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

	// refs counts the routes, current or still leased, that hold the
	// instance; unref is closed when it drops to zero after a retirement.
	refs  atomic.Int32
	unref chan struct{}

	dead     atomic.Bool // the process exited
	retiring atomic.Bool // the manager is ending it: an exit is no crash
	killOnce sync.Once
}

// start runs one process of v: exec (from the spawner thread, verified
// again), handshake, dispense, health check. On failure nothing is left
// running and the error is a *LoadError.
func (m *Manager[T]) start(ctx context.Context, v *version) (*instance[T], error) {
	inst := &instance[T]{v: v, unref: make(chan struct{})}
	fail := func(phase Phase, err error) (*instance[T], error) {
		return nil, &LoadError{Version: v.id, Path: v.source, SHA256: fmt.Sprintf("%x", v.sum), Phase: phase, Err: err}
	}
	timeout := m.opts.StartTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if err := ctx.Err(); err != nil || timeout <= 0 {
		if err == nil {
			err = context.DeadlineExceeded
		}
		return fail(PhaseStart, err)
	}
	var (
		tmpDir string
		run    atomic.Pointer[procRunner]
	)
	cfg := &goplugin.ClientConfig{
		HandshakeConfig:  m.opts.Handshake,
		Plugins:          m.opts.Plugins,
		AllowedProtocols: m.opts.Protocols,
		StartTimeout:     timeout,
		Logger:           newHclog(m.log.With("version", v.id)),
		RunnerFunc: func(_ hclog.Logger, cmd *exec.Cmd, dir string) (runner.Runner, error) {
			tmpDir = dir
			r, err := newProcRunner(cmd, v.staged, m.opts.Args, v.sum, m.sp, dir)
			inst.run = r
			run.Store(r)
			return r, err
		},
	}
	c := goplugin.NewClient(cfg)
	inst.client = c
	cleanup := func() {
		c.Kill()
		if tmpDir != "" {
			_ = os.RemoveAll(tmpDir) // left behind by go-plugin when exec fails
		}
	}
	stopAbort := context.AfterFunc(ctx, func() {
		if r := run.Load(); r != nil {
			r.abort()
		}
	})
	_, err := c.Start()
	if !stopAbort() {
		// ctx ended during the start and the process was killed: that,
		// not go-plugin's account of a vanished process, is the reason.
		err = fmt.Errorf("start aborted: %w", context.Cause(ctx))
	}
	if err != nil {
		cleanup()
		return fail(PhaseStart, err)
	}
	inst.pid = inst.run.pid
	proto, err := c.Client()
	if err != nil {
		cleanup()
		return fail(PhaseDispense, err)
	}
	raw, err := proto.Dispense(m.opts.Name)
	if err != nil {
		cleanup()
		return fail(PhaseDispense, err)
	}
	impl, ok := raw.(T)
	if !ok {
		cleanup()
		return fail(PhaseDispense, fmt.Errorf("plugin %q dispensed %T, which is not a %T", m.opts.Name, raw, (*T)(nil)))
	}
	inst.impl = impl
	hctx, cancel := context.WithTimeout(ctx, timeout)
	err = m.health(hctx, proto, impl)
	cancel()
	if err != nil {
		cleanup()
		return fail(PhaseHealth, err)
	}
	inst.since = time.Now()
	m.mu.Lock()
	v.info.PID = inst.pid
	m.mu.Unlock()
	m.wg.Add(1)
	go m.watchExit(inst)
	return inst, nil
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
	staged string
	sum    [sha256.Size]byte
	info   Version // guarded by Manager.mu
}
