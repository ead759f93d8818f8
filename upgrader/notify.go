package upgrader

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/handoff-go/handoff/internal/activation"
	"github.com/handoff-go/handoff/internal/sdnotify"
)

// The systemd glue: sd_notify messages and the watchdog, and the part of the
// main-PID hand-over that systemd needs (socket activation is in
// activation.go, the PID file's owner in pidfile.go). Every hook is a no-op
// unless the process runs under systemd (NOTIFY_SOCKET, WATCHDOG_USEC,
// LISTEN_FDS). The hooks are called by the rest of the package at these
// points:
//
//	sdInit            New, after the sockets were inherited (first start: read LISTEN_FDS)
//	sdActivated       Listen, before binding: an activated socket for network/addr
//	sdReady           a generation took charge without a parent to commit it (READY=1)
//	sdBeforeUpgrade   an upgrade starts: wait until systemd reaped the ExecReload= process
//	sdUpgrading       the new process is about to start (RELOADING=1, MONOTONIC_USEC, EXTEND_TIMEOUT_USEC)
//	sdSpawned, sdAccepting  STATUS= lines for the phases of an upgrade
//	sdRolledBack      an upgrade failed; this generation stays in charge (READY=1)
//	sdCommitPIDFile   the commit: the PID file's hand-over (see below)
//	sdHandedOver      the new generation committed; this one drains and exits
//	sdFinalHandOver   the end of the drain (or Close): the PID file names the new generation
//	sdReclaimed       the new generation died while this one drained: in charge again
//	sdBecameMain      a new generation's parent exited: it is the main process now
//	sdStopping        Stop (STOPPING=1)
//
// The state machine (loop.go) calls them, each at its point; none is a side
// effect of an event.
//
// # Who speaks to systemd
//
// Only the main process does, so that the unit can use NotifyAccess=main:
// the first generation from its start, a later one once its parent has
// exited. The old generation N says everything about an upgrade, the READY=1
// that ends the reload included; the new generation N+1 says nothing until
// N has exited.
//
// # The main-PID hand-over
//
// No MAINPID= is ever sent. On systemd 252 a MAINPID= naming a process that
// is still a child of the old main makes systemd treat the new main as
// "alien" and SIGKILL it at once on stop (measured: 6 of 6 runs; re-sending
// MAINPID= after re-parenting does not help). Instead systemd finds N+1 in
// the PID file (Options.PIDFile, the unit's PIDFile=) when N exits: by then
// the kernel has re-parented N+1 to systemd, which adopts it as its own
// child, so a graceful stop stays graceful after any number of upgrades.
// This needs Options.PIDFile under systemd; New logs a warning without it.
//
// systemd also reads the PID file whenever an ExecReload= process (the
// "kill -HUP $MAINPID") ends, and a PID file naming N+1 at that moment
// would make N+1 an alien main again: that happened in our integration test
// when systemd reaped the kill late, after a fast upgrade had committed, and
// a second reload during the drain would do it too. So, under systemd, the
// PID file names N+1 only from the end of N's drain, just before N exits:
// at the commit N rewrites its own pid (which proves the file writable, or
// fails the commit), and it writes N+1's when its drain has finished
// (sdFinalHandOver, also from Close). If N+1 dies before that, N takes
// charge again and the file never named N+1. And before it spawns N+1, N
// waits (bounded) until systemd has reaped the process that sent the reload
// signal (sdWaitControl).
//
// barrierTimeout bounds the wait for systemd to process the messages sent
// before a hand-over or a stop.
const barrierTimeout = 2 * time.Second

// controlWaitTimeout bounds sdWaitControl.
const controlWaitTimeout = 2 * time.Second

// extendMargin is added to the remaining upgrade time in EXTEND_TIMEOUT_USEC:
// the READY=1 that ends the reload comes after the commit or the rollback.
const extendMargin = 10 * time.Second

type systemd struct {
	mu         sync.Mutex
	main       bool                // this process is systemd's main process
	sockets    []activation.Socket // activated, not yet claimed (first generation)
	names      map[string]int      // ListenActivated calls per name
	owned      map[string]bool     // unix socket paths owned by the socket unit
	wdInterval time.Duration       // watchdog interval, 0 when off
	wdRunning  bool
	handedOver bool // sdFinalHandOver wrote the successor's pid
}

// sdInit reads what systemd passed: on a first start the activated sockets;
// in every generation the watchdog interval. Errors in the environment are
// logged, not fatal: the server can run without them.
func (u *Upgrader) sdInit() {
	s := &u.sd
	s.names = map[string]int{}
	s.owned = map[string]bool{}
	first := !u.tf.HasParent()
	if first {
		socks, err := activation.Sockets()
		if err != nil {
			u.log.Warn("upgrader: socket activation", "error", err)
		}
		s.sockets = socks
		s.main = true
		if sdnotify.Enabled() && u.opts.PIDFile == "" {
			u.log.Warn("upgrader: running under systemd (NOTIFY_SOCKET is set) without Options.PIDFile: after an upgrade systemd cannot adopt the new generation as its main process; set Options.PIDFile to the unit's PIDFile=")
		}
	}
	// The watchdog is meant for the process WATCHDOG_PID names: systemd set
	// it to the first generation; each later one inherits its parent's
	// environment, in which the parent put its own pid once it was main.
	ref := os.Getpid()
	if !first {
		ref = os.Getppid()
	}
	iv, err := sdnotify.WatchdogInterval(ref)
	if err != nil {
		u.log.Warn("upgrader: systemd watchdog", "error", err)
	}
	s.wdInterval = iv
	if first && iv > 0 {
		u.sdStartWatchdog(iv / 2)
	}
}

// sdSend sends one message if this process is the main process.
func (u *Upgrader) sdSend(assignments ...string) {
	u.sd.mu.Lock()
	main := u.sd.main
	u.sd.mu.Unlock()
	if !main {
		return
	}
	if _, err := sdnotify.Send(assignments...); err != nil {
		u.log.Warn("upgrader: sd_notify", "error", err)
	}
}

// sdBarrier waits, bounded, until systemd has processed what was sent.
func (u *Upgrader) sdBarrier() {
	if _, err := sdnotify.Barrier(barrierTimeout); err != nil {
		u.log.Warn("upgrader: sd_notify barrier", "error", err)
	}
}

func (u *Upgrader) sdStatusServing() string {
	return sdnotify.Status(fmt.Sprintf("serving: generation %d, pid %d", u.gen, os.Getpid()))
}

// sdReady: the first generation is ready and in charge.
func (u *Upgrader) sdReady() {
	u.sdSend(sdnotify.Ready, u.sdStatusServing())
	u.sd.mu.Lock()
	unused := u.sd.sockets
	u.sd.sockets = nil
	u.sd.mu.Unlock()
	for _, sock := range unused {
		u.emit(Event{Kind: EventUnusedSocket, Generation: u.gen, PID: os.Getpid(),
			Err: fmt.Errorf("systemd passed socket %s, but no Listen or ListenActivated call claimed it; closing it", sock)})
		sock.Close()
	}
}

// sdBeforeUpgrade runs on the goroutine that prepares an upgrade, before the
// new process starts: systemd reads the PID file when it reaps the
// ExecReload= process, which must happen before the commit can touch it.
func (u *Upgrader) sdBeforeUpgrade() {
	if u.sdWaitsBeforeUpgrade() {
		u.sdWaitControl(controlWaitTimeout)
	}
}

// sdWaitsBeforeUpgrade reports whether sdBeforeUpgrade may wait.
func (u *Upgrader) sdWaitsBeforeUpgrade() bool {
	return sdnotify.Enabled() && u.opts.PIDFile != ""
}

// sdUpgrading: an upgrade to generation gen starts.
func (u *Upgrader) sdUpgrading(gen int) {
	if u.tf.HasParent() {
		// Upgrade waited for the parent to exit: this process is main now,
		// even if its report of the exit is still on its way.
		u.sdBecameMain()
	}
	msg := []string{sdnotify.Reloading}
	if m := sdnotify.MonotonicUsec(); m != "" {
		msg = append(msg, m)
	}
	msg = append(msg,
		sdnotify.ExtendTimeout(u.opts.UpgradeTimeout+extendMargin),
		sdnotify.Status(fmt.Sprintf("upgrading: starting generation %d", gen)))
	u.sdSend(msg...)
}

// sdSpawned: the new process introduced itself.
func (u *Upgrader) sdSpawned(gen, pid int) {
	u.sdSend(sdnotify.Status(fmt.Sprintf("upgrading: generation %d (pid %d) started, initialising", gen, pid)))
}

// sdAccepting: the new generation accepts.
func (u *Upgrader) sdAccepting(gen, pid int) {
	what := "committing"
	if u.opts.Probation > 0 {
		what = "on probation for " + u.opts.Probation.String()
	}
	u.sdSend(sdnotify.Status(fmt.Sprintf("upgrading: generation %d (pid %d) accepting, %s", gen, pid, what)))
}

// sdRolledBack: the upgrade to generation gen failed; this one serves on.
func (u *Upgrader) sdRolledBack(gen int, cause error) {
	u.sdSend(sdnotify.Ready, sdnotify.Status(fmt.Sprintf("serving: generation %d, pid %d; upgrade to generation %d failed: %v", u.gen, os.Getpid(), gen, cause)))
}

// sdCommitPIDFile is the PID file's part of the commit to pid. Without
// systemd the file names the new generation from now on. Under systemd it
// keeps naming this process until the end of the drain (see "The main-PID
// hand-over"); rewriting it now proves it writable, so that a file that
// cannot be written fails the commit rather than the end of the drain.
func (m *machine) sdCommitPIDFile(pid int) error {
	if sdnotify.Enabled() && m.pid.path != "" {
		return m.pid.claim()
	}
	return m.pid.handOver(pid)
}

// sdHandedOver: generation gen (pid) committed; this one drains and exits.
// The reload ends here, while this process is still the main one; the
// barrier makes sure systemd has taken READY=1 before this process can exit
// and systemd moves on to the PID file.
func (u *Upgrader) sdHandedOver(gen, pid int) {
	u.sd.mu.Lock()
	main := u.sd.main
	u.sd.mu.Unlock()
	u.sdSend(sdnotify.Ready, sdnotify.Status(fmt.Sprintf("generation %d (pid %d) in charge; generation %d draining", gen, pid, u.gen)))
	if main {
		u.sdBarrier()
	}
}

// sdFinalHandOver: under systemd, the PID file names the successor from the
// end of this generation's drain (or Close, if there was no drain), just
// before this process exits. Not if the successor is gone or stopping: then
// the service ends with this process. Idempotent.
func (m *machine) sdFinalHandOver() error {
	u, s := m.u, m.succ
	if !sdnotify.Enabled() || m.pid.path == "" || s == nil || s.gone || s.stopping || u.sd.handedOver {
		return nil
	}
	u.sd.handedOver = true
	if err := m.pid.handOver(s.pid); err != nil {
		return err
	}
	u.sdSend(sdnotify.Status(fmt.Sprintf("serving: generation %d, pid %d", s.gen, s.pid)))
	return nil
}

// sdReclaimed: the successor died while this generation drained; it serves
// again and is still the main process (the PID file never named the
// successor under systemd).
func (u *Upgrader) sdReclaimed() {
	u.sdSend(sdnotify.Ready, sdnotify.Status(fmt.Sprintf("serving: generation %d, pid %d; its successor died", u.gen, os.Getpid())))
}

// sdBecameMain: this generation's parent exited; systemd has adopted this
// process as its main one (through the PID file). Idempotent.
func (u *Upgrader) sdBecameMain() {
	u.sd.mu.Lock()
	if u.sd.main {
		u.sd.mu.Unlock()
		return
	}
	u.sd.main = true
	iv := u.sd.wdInterval
	u.sd.mu.Unlock()
	if iv > 0 {
		// For the generation this one starts in turn (see sdInit).
		_ = os.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
		// The first ping waits a little: systemd handles the notification
		// socket before SIGCHLD, so a ping sent at once could arrive before
		// it has read the PID file and be refused. The parent pinged at
		// most half an interval before it exited.
		u.sdStartWatchdog(iv / 4)
	}
}

// sdStopping: a graceful stop of the generation in charge.
func (u *Upgrader) sdStopping() {
	u.sd.mu.Lock()
	main := u.sd.main
	u.sd.mu.Unlock()
	if !main {
		return
	}
	u.sdSend(sdnotify.Stopping, sdnotify.Status(fmt.Sprintf("stopping: generation %d (pid %d) draining", u.gen, os.Getpid())))
	u.sdBarrier()
}

// sdStartWatchdog pings WATCHDOG=1 after first, then every half interval,
// until Stop. Once per process.
func (u *Upgrader) sdStartWatchdog(first time.Duration) {
	u.sd.mu.Lock()
	if u.sd.wdRunning {
		u.sd.mu.Unlock()
		return
	}
	u.sd.wdRunning = true
	every := u.sd.wdInterval / 2
	u.sd.mu.Unlock()
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		t := time.NewTimer(first)
		defer t.Stop()
		for {
			select {
			case <-u.stopped:
				return
			case <-u.loopDone:
				return
			case <-t.C:
				u.sdSend(sdnotify.Watchdog)
				t.Reset(every)
			}
		}
	}()
}
