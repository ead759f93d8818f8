package upgrader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/cloudflare/tableflip"

	"github.com/handoff-go/handoff/internal/control"
	"github.com/handoff-go/handoff/listener"
)

// Defaults for Options.
const (
	// DefaultUpgradeTimeout bounds a whole upgrade, from spawn to commit,
	// probation included.
	DefaultUpgradeTimeout = time.Minute
	// DefaultDrainTimeout bounds Drain when its context has no deadline,
	// and the drain of a new generation that is rolled back.
	DefaultDrainTimeout = 30 * time.Second
	// DefaultMaxStateSize bounds the state blob handed to the next
	// generation.
	DefaultMaxStateSize = 1 << 20
	// DefaultHealthInterval is the period of health checks during
	// probation.
	DefaultHealthInterval = 100 * time.Millisecond
)

// finishTimeout bounds how long a final stop waits for the server to take
// the connections queued in the kernel before it closes a listener.
const finishTimeout = time.Second

// handshakeTimeout bounds the control hand-shake a new generation makes in
// New.
const handshakeTimeout = 10 * time.Second

// Options configure an Upgrader. The zero value means all defaults.
type Options struct {
	// UpgradeTimeout bounds an upgrade from the spawn of the new process to
	// its commit, probation included. A new generation that has not
	// committed by then is rolled back (and killed if it never contacted
	// this one). Default DefaultUpgradeTimeout. It must be longer than
	// Probation.
	UpgradeTimeout time.Duration

	// Probation is how long a new generation serves, health-checked, while
	// the previous one is paused (not closed) and can still take over
	// again. 0 (the default) commits as soon as the new generation is
	// ready. The previous generation's value governs: a new binary cannot
	// shorten the window it is judged by.
	Probation time.Duration

	// HealthCheck is run by Ready before the generation accepts
	// connections, and every HealthInterval during probation. A non-nil
	// error fails the upgrade. Default: always healthy. Listeners do not
	// accept until the first check passed, so the check must not call the
	// process's own listeners.
	HealthCheck func(ctx context.Context) error

	// HealthInterval is the period of health checks during probation.
	// Default DefaultHealthInterval.
	HealthInterval time.Duration

	// DrainTimeout bounds Drain when its context has no deadline, and the
	// drain of a new generation that is rolled back while it serves.
	// Default DefaultDrainTimeout.
	DrainTimeout time.Duration

	// IdleGrace is passed to every tracked listener: while draining, an
	// idle keep-alive connection is closed once it has been idle this long.
	// Default listener.DefaultIdleGrace.
	IdleGrace time.Duration

	// NoHandOver turns the hand-over of connections off. By default, once
	// a new generation has committed, the previous one hands it every
	// HTTP/1 connection that waits for its next request (not TLS, HTTP/2
	// or hijacked; raw ones their server declared listener.Idle), as soon
	// as it waits, instead of closing it: the clients keep their
	// connections and see nothing (see listener.Listener.HandOver). Both
	// generations must be willing (an older binary never is: connections
	// then drain as before). Linux only.
	NoHandOver bool

	// PIDFile, if set, names the process in charge of the service,
	// written atomically (temporary file and rename): a first generation
	// writes it when it is ready; at a commit the previous generation
	// writes the new one's pid before it sends the commit (under systemd:
	// at the end of its drain, see the package documentation); a
	// rollback, or a successor that dies while the previous generation
	// drains, puts the previous pid back; a final stop removes it.
	PIDFile string

	// SaveState, if set, is called by Upgrade before the new process is
	// started; the bytes it returns are read by the new generation with
	// State. At most MaxStateSize bytes, or Upgrade fails with
	// ErrStateTooLarge and starts nothing.
	SaveState func() ([]byte, error)

	// MaxStateSize bounds the state blob. Default DefaultMaxStateSize.
	MaxStateSize int

	// ListenConfig is used for sockets that are not inherited. Default: the
	// zero net.ListenConfig.
	ListenConfig *net.ListenConfig

	// Logger receives a record for every event. Nil means discard.
	Logger *slog.Logger

	// OnEvent, if set, is called synchronously for every event; it must
	// not block.
	OnEvent func(Event)
}

func (o Options) withDefaults() Options {
	if o.UpgradeTimeout <= 0 {
		o.UpgradeTimeout = DefaultUpgradeTimeout
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = DefaultHealthInterval
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.MaxStateSize <= 0 {
		o.MaxStateSize = DefaultMaxStateSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Upgrader hands a process's sockets to the next generation of its binary.
//
// All methods are safe for concurrent use. One Upgrader exists per process:
// see New. Its state is owned by one goroutine (loop.go); the methods send it
// requests.
type Upgrader struct {
	opts    Options
	log     *slog.Logger
	tf      *tableflip.Upgrader
	created time.Time
	gen     int
	state   []byte
	parts   stateParts // SaveStatePart, StatePart (stateparts.go)
	// savesState: Options.SaveState was set (opts.SaveState also saves
	// the parts).
	savesState bool

	in       chan any      // requests and reports for the state machine
	loopDone chan struct{} // closed when the state machine has ended
	stopped  chan struct{} // closed when Stop is first handled
	wg       sync.WaitGroup

	// mu guards what the methods read without asking the state machine.
	mu         sync.Mutex
	listeners  []*listener.Listener
	listenKeys map[string]int // Listen calls per network and address
	paused     bool           // listeners do not accept (before Ready, during an upgrade)
	exitC      chan struct{}  // closed when this generation must drain
	drain      *drainRun      // the drain in progress or done, nil if none

	readyOnce sync.Once
	readyErr  error
	closeOnce sync.Once
	closeErr  error

	sd systemd // socket activation, sd_notify and watchdog (activation.go, notify.go)
}

var (
	processMu       sync.Mutex
	processUpgrader *Upgrader
)

// New returns the process's Upgrader. On a first start it has no parent and
// generation 1; in a process started by Upgrade it adopts the sockets and the
// state of its parent, which waits for it to call Ready.
//
// Only one Upgrader can exist per process (the hand-over is a property of
// the process); a second call returns an error. A process that looks like an
// upgrade but whose inheritance is unusable gets an error wrapping
// ErrMalformedEnvironment, never a panic.
func New(opts Options) (*Upgrader, error) {
	processMu.Lock()
	defer processMu.Unlock()
	if processUpgrader != nil {
		return nil, errors.New("upgrader: only one Upgrader per process")
	}
	u, err := newUpgrader(opts)
	if err != nil {
		return nil, err
	}
	processUpgrader = u
	return u, nil
}

func newUpgrader(opts Options) (*Upgrader, error) {
	opts = opts.withDefaults()
	if opts.Probation >= opts.UpgradeTimeout {
		return nil, fmt.Errorf("upgrader: Probation (%s) must be shorter than UpgradeTimeout (%s)", opts.Probation, opts.UpgradeTimeout)
	}
	if err := checkInherited(); err != nil {
		return nil, err
	}
	tf, err := tableflip.New(tableflip.Options{
		// Our own deadline comes first and rolls back gracefully: a new
		// generation that serves then drains for up to DrainTimeout.
		// tableflip's only kills a child whose pid we never learnt.
		UpgradeTimeout: opts.UpgradeTimeout + opts.DrainTimeout + time.Second,
		ListenConfig:   opts.ListenConfig,
	})
	if err != nil {
		if errTFNotSupported(err) {
			return nil, ErrNotSupported
		}
		if os.Getenv(sentinelEnv) != "" {
			return nil, fmt.Errorf("%w: %w", ErrMalformedEnvironment, err)
		}
		return nil, fmt.Errorf("upgrader: %w", err)
	}
	u := &Upgrader{
		opts:     opts,
		log:      opts.Logger,
		tf:       tf,
		created:  time.Now(),
		gen:      1,
		in:       make(chan any),
		loopDone: make(chan struct{}),
		stopped:  make(chan struct{}),
		paused:   true,
		exitC:    make(chan struct{}),
	}
	u.savesState = opts.SaveState != nil
	u.opts.SaveState = u.parts.wrap(opts.SaveState)
	m := &machine{u: u, pid: pidFile{path: opts.PIDFile}}
	if tf.HasParent() {
		if err := m.handshake(); err != nil {
			tf.Stop()
			return nil, err
		}
		u.state, u.parts.inherited = splitParts(u.state)
		// Only the child of tableflip carries the variable; children this
		// process starts otherwise must not (see findChild).
		_ = os.Unsetenv(sentinelEnv)
	}
	u.sdInit()
	go m.run()
	if m.parent != nil {
		m.watchParent()
	}
	return u, nil
}

// Generation is this process's generation: 1 on a first start, its parent's
// plus one after an upgrade.
func (u *Upgrader) Generation() int { return u.gen }

// HasParent reports whether this process was started by Upgrade.
func (u *Upgrader) HasParent() bool { return u.tf.HasParent() }

// State returns the blob the previous generation handed over (see
// Options.SaveState), or nil on a first start.
func (u *Upgrader) State() []byte { return u.state }

// Exit returns a channel that is closed when this generation should drain
// and exit: its successor committed, Stop was called, or (in a new
// generation) Ready failed or the parent rolled it back. After Drain
// returned ErrReclaimed, Exit returns a new channel: wait for it again.
func (u *Upgrader) Exit() <-chan struct{} {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.exitC
}

// Listen returns a tracked listener for network ("tcp", "tcp4", "tcp6",
// "unix" or "unixpacket") and addr. A socket inherited from the previous
// generation under the same network and address (port 0 included), or passed
// by systemd's socket activation for that address, is adopted, never bound
// again; otherwise a new one is created and will be handed to the next
// generation. The listener does not accept until Ready has run the health
// check.
func (u *Upgrader) Listen(network, addr string) (*listener.Listener, error) {
	switch network {
	case "tcp", "tcp4", "tcp6", "unix", "unixpacket":
	default:
		return nil, fmt.Errorf("upgrader: Listen: unsupported network %q", network)
	}
	if ln, ok := u.sdActivated(network, addr); ok {
		return u.track(ln), nil
	}
	// tableflip hands sockets over by network and address: the n-th call
	// for the same pair (several listeners on port 0) gets a key of its
	// own, so each generation finds each socket at the same call.
	key := addr
	u.mu.Lock()
	if u.listenKeys == nil {
		u.listenKeys = map[string]int{}
	}
	if n := u.listenKeys[network+" "+addr]; n > 0 && network != "unix" && network != "unixpacket" {
		key = addr + "#" + strconv.Itoa(n)
	}
	u.listenKeys[network+" "+addr]++
	u.mu.Unlock()
	lc := u.opts.ListenConfig
	if lc == nil {
		lc = &net.ListenConfig{}
	}
	inner, err := u.tf.ListenWithCallback(network, key, func(network, _ string) (net.Listener, error) {
		return lc.Listen(context.Background(), network, addr)
	})
	if err != nil {
		return nil, fmt.Errorf("upgrader: listen %s %s: %w", network, addr, err)
	}
	return u.track(inner), nil
}

// track wraps a listener of this generation and registers it: it accepts
// only while this generation does.
func (u *Upgrader) track(inner net.Listener) *listener.Listener {
	ln := listener.Wrap(inner, listener.Options{IdleGrace: u.opts.IdleGrace, Logger: u.log})
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.paused {
		ln.Pause()
	}
	u.listeners = append(u.listeners, ln)
	return ln
}

// ListenPacket returns a packet socket for network ("udp", "udp4", "udp6",
// "unixgram") and addr, inherited from the previous generation or new. Both
// generations hold it during an upgrade; this one should stop reading once
// Exit is closed.
func (u *Upgrader) ListenPacket(network, addr string) (net.PacketConn, error) {
	switch network {
	case "udp", "udp4", "udp6", "unixgram":
	default:
		return nil, fmt.Errorf("upgrader: ListenPacket: unsupported network %q", network)
	}
	pc, err := u.tf.ListenPacket(network, addr)
	if err != nil {
		return nil, fmt.Errorf("upgrader: listen packet %s %s: %w", network, addr, err)
	}
	return pc, nil
}

// File returns the file inherited under name, or, on a first start, the one
// open returns, which is then handed to later generations. Use it for any fd
// other than a socket: a memfd, a lock file, a pipe. The name
// "handoff.welcome" is the Upgrader's own.
func (u *Upgrader) File(name string, open func() (*os.File, error)) (*os.File, error) {
	if name == control.WelcomeFileName {
		return nil, fmt.Errorf("upgrader: file name %q is reserved", name)
	}
	f, err := u.tf.File(name)
	if err != nil {
		return nil, fmt.Errorf("upgrader: inherited file %q: %w", name, err)
	}
	if f != nil {
		return f, nil
	}
	if open == nil {
		return nil, nil
	}
	f, err = open()
	if err != nil {
		return nil, err
	}
	if err := u.tf.AddFile(name, f); err != nil {
		return nil, fmt.Errorf("upgrader: register file %q: %w", name, err)
	}
	return f, nil
}

// Listeners returns the tracked listeners created by Listen and
// ListenActivated.
func (u *Upgrader) Listeners() []*listener.Listener {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*listener.Listener(nil), u.listeners...)
}

// setPaused pauses or resumes every listener, and the ones Listen adds later.
func (u *Upgrader) setPaused(paused bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.paused = paused
	for _, ln := range u.listeners {
		if paused {
			ln.Pause()
		} else {
			ln.Resume()
		}
	}
}

// closeExit closes the current exit channel.
func (u *Upgrader) closeExit() {
	u.mu.Lock()
	defer u.mu.Unlock()
	select {
	case <-u.exitC:
	default:
		close(u.exitC)
	}
}

// Ready runs the health check and starts accepting on every listener. On a
// first start it then writes the PID file and returns: this generation is in
// charge. In a new generation it waits for the previous one to let it accept,
// holds the probation window under periodic health checks, and returns once
// the previous generation has committed to it (or, if the previous one
// vanished, once it has taken charge itself).
//
// In a new generation a failed health check, a rollback by the parent, Stop,
// or ctx ending returns an error (wrapping ErrUnhealthy, ErrRolledBack or
// ErrStopped) and closes Exit: the process should drain and exit. It never
// touches what the generation in charge owns (sockets, PID file, systemd).
// Only the first call does the work; later calls return its result.
func (u *Upgrader) Ready(ctx context.Context) error {
	u.readyOnce.Do(func() {
		health := u.check(ctx)
		reply := make(chan error, 1)
		if !u.send(&readyReq{ctx: ctx, health: health, reply: reply}) {
			u.readyErr = ErrStopped
			return
		}
		u.readyErr = <-reply
	})
	return u.readyErr
}

func (u *Upgrader) check(ctx context.Context) error {
	if u.opts.HealthCheck == nil {
		return nil
	}
	return u.opts.HealthCheck(ctx)
}

// Upgrade starts the binary at os.Args[0] as the next generation, hands it
// every socket and file and the state blob, and waits until it has committed
// or failed. It returns nil once the new generation is in charge (Exit is
// then closed: drain and exit). Any other outcome leaves this generation
// serving, accepting again and able to upgrade again, with nothing the
// upgrade started left running, and returns an *UpgradeError (exited with its
// status, timed out, unhealthy, PID file, stopped, canceled) or a refusal
// (ErrStateTooLarge, ErrStopped, ErrRolledBack, ErrUpgraded).
//
// Upgrade requests never overlap and are never lost: a call made while an
// upgrade runs waits for it and joins the one follow-up upgrade that starts
// after it, on the binary then at os.Args[0] (every call made meanwhile
// shares that follow-up and its result). If the running upgrade commits, the
// follow-up is handed to the new generation, which carries it out once this
// one has exited, and the call returns nil (EventForwarded). A call made in a
// generation that has not taken charge yet (a new one on probation, or one
// whose parent has not exited) waits until it has; in a generation that
// handed over it is forwarded to the successor the same way.
//
// Cancelling ctx stops the waiting; it rolls back the upgrade only if no
// other call shares it, and only before the commit. The commit is one-way:
// once this generation has sent it, no cancellation, Stop or timeout undoes
// it.
func (u *Upgrader) Upgrade(ctx context.Context) error {
	reply := make(chan error, 1)
	if !u.send(&upgradeReq{ctx: ctx, reply: reply}) {
		return ErrStopped
	}
	return <-reply
}

// Stop ends this generation without an upgrade and closes Exit: the caller
// then drains (Drain) and exits. When this generation is in charge it is a
// final stop: an upgrade in progress is rolled back first (before its commit;
// the new process is ended, gracefully if it already serves), no other
// starts, and once the new process is gone unix socket files are removed and
// the PID file too if it names this process. A new generation that has not
// committed tells its parent, which rolls the upgrade back and serves on; a
// generation that handed over just finishes its drain: the successor serves.
// Stop is idempotent and does not block on the drain.
func (u *Upgrader) Stop() {
	done := make(chan struct{})
	if u.send(&stopReq{done: done}) {
		<-done
	}
}

// Retire tells the Upgrader that this generation's servers are shutting down
// in a way that cannot be undone (http.Server.Shutdown, grpc.Server's
// GracefulStop): from now on the death of a successor is reported, but this
// generation does not take charge again. Drain retires when it ends.
// Idempotent.
func (u *Upgrader) Retire() {
	done := make(chan struct{})
	if u.send(&retireReq{done: done}) {
		<-done
	}
}

// Close stops the Upgrader (see Stop), waits until nothing an upgrade started
// is left running, hands the PID file over if the drain did not, and waits for
// its goroutines. It does not drain; call Drain first. It returns what it
// could not do (the PID file hand-over). Idempotent: later calls return the
// first one's result.
func (u *Upgrader) Close() error {
	u.closeOnce.Do(func() {
		u.Stop()
		reply := make(chan error, 1)
		if u.send(&closeReq{reply: reply}) {
			u.closeErr = <-reply
		}
		<-u.loopDone
		u.wg.Wait()
	})
	return u.closeErr
}

// send hands a request to the state machine; false once it has ended.
func (u *Upgrader) send(req any) bool {
	select {
	case u.in <- req:
		return true
	case <-u.loopDone:
		return false
	}
}

// goReport runs f on a goroutine owned by the Upgrader and hands its report
// to the state machine (dropped once the machine has ended).
func (u *Upgrader) goReport(f func() any) {
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		u.send(f())
	}()
}
