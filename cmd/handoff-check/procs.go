//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	ossignal "os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/handoff-go/handoff/internal/proc"
)

// procs is the checker's view of the server's processes.
//
// The checker is a child subreaper (PR_SET_CHILD_SUBREAPER): a process
// that the server command or an upgrade command starts stays its
// descendant when its parent exits (a generation that tableflip or handoff
// started, a daemon, a helper left running), so the checker can find the
// process that answers among its descendants, reap the generations that
// exit, and list at the end what is left. Its own commands (exec.Cmd) are
// reaped by their Wait; every other child by the reaper goroutine, on
// SIGCHLD.
type procs struct {
	self int
	out  io.Writer // the output of the server and the commands

	mu      sync.Mutex
	managed map[int]bool     // pids of exec.Cmds, which their Wait reaps
	exits   map[int]exitInfo // how reaped processes ended
	seen    map[int]bool     // every pid seen serving or in the PID file

	sigs chan os.Signal
	stop chan struct{}
	wg   sync.WaitGroup // the reaper and each command's Wait
}

// exitInfo is how a process ended.
type exitInfo struct {
	at     time.Time
	status int // exit status, or 128 + signal
}

func (e exitInfo) String() string {
	if e.status > 128 {
		return fmt.Sprintf("killed by %s", unix.SignalName(syscall.Signal(e.status-128)))
	}
	return fmt.Sprintf("exited with status %d", e.status)
}

// newProcs makes this process a subreaper and starts the reaper; end
// stops it.
func newProcs(out io.Writer) (*procs, error) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("PR_SET_CHILD_SUBREAPER: %w", err)
	}
	p := &procs{
		self: os.Getpid(), out: out,
		managed: map[int]bool{}, exits: map[int]exitInfo{}, seen: map[int]bool{},
		sigs: make(chan os.Signal, 1), stop: make(chan struct{}),
	}
	ossignal.Notify(p.sigs, syscall.SIGCHLD)
	p.wg.Add(1)
	go p.reapLoop()
	return p, nil
}

// reapLoop reaps the children that are not exec.Cmds on each SIGCHLD (and
// every 100 ms, in case signals merged while a scan ran) until end.
func (p *procs) reapLoop() {
	defer p.wg.Done()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			p.reap()
			return
		case <-p.sigs:
		case <-tick.C:
		}
		p.reap()
	}
}

// reap waits for every exited child that no exec.Cmd owns: those the
// kernel lists as children, and the server processes seen (the kernel's
// lists of children are not reliable while children come and go; a pid
// that is not a child only gets ECHILD).
func (p *procs) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	pids := proc.Children(p.self)
	for pid := range p.seen {
		if _, done := p.exits[pid]; !done {
			pids = append(pids, pid)
		}
	}
	for _, pid := range pids {
		if p.managed[pid] {
			continue
		}
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err != nil || got != pid {
			continue // alive, or not ours to reap after all
		}
		p.exits[pid] = exitInfo{at: time.Now(), status: statusOf(ws)}
	}
}

func statusOf(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// command is a process the checker started.
type command struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{} // closed once reaped; then info is set
	info exitInfo
}

// start starts args (the server command, or sh -c and an upgrade or stop
// command) in a process group of its own, so that a terminal's ^C reaches
// only the checker, with the output going to p.out.
func (p *procs) start(args []string, env []string) (*command, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = p.out, p.out
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Under p.mu, so that the reaper cannot take the process's exit from
	// its Wait between Start and the record.
	p.mu.Lock()
	err := cmd.Start()
	if err == nil {
		p.managed[cmd.Process.Pid] = true
	}
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	c := &command{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_ = cmd.Wait()
		c.info = exitInfo{at: time.Now(), status: statusOf(unix.WaitStatus(cmd.ProcessState.Sys().(syscall.WaitStatus)))}
		p.mu.Lock()
		delete(p.managed, c.pid)
		p.exits[c.pid] = c.info
		p.mu.Unlock()
		close(c.done)
	}()
	return c, nil
}

// exited returns how pid ended, if the checker reaped it.
func (p *procs) exited(pid int) (exitInfo, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.exits[pid]
	return e, ok
}

// see records pid as one of the server's processes.
func (p *procs) see(pid int) {
	if pid <= 0 {
		return
	}
	p.mu.Lock()
	p.seen[pid] = true
	p.mu.Unlock()
}

// owner returns the pid of the process that holds the server's end of the
// connection from client to server (as the client sees them), or 0 if no
// process the checker looks at holds it. It looks at hints first, then at
// the checker's descendants and those of extra.
func (p *procs) owner(server, client netip.AddrPort, hints []int, extra int) int {
	so, ok, err := proc.TCPLookup(server, client)
	if err != nil || !ok || so.Inode == 0 {
		return 0
	}
	tried := map[int]bool{p.self: true}
	holds := func(pid int) bool {
		if pid <= 0 || tried[pid] {
			return false
		}
		tried[pid] = true
		inodes, err := proc.SocketInodes(pid)
		return err == nil && inodes[so.Inode]
	}
	for _, pid := range hints {
		if holds(pid) {
			return pid
		}
	}
	cands := proc.Descendants(p.self)
	if extra > 0 {
		cands = append(append(cands, extra), proc.Descendants(extra)...)
	}
	// Newest first: a new generation is the one looked for.
	slices.Reverse(cands)
	for _, pid := range cands {
		if holds(pid) {
			return pid
		}
	}
	return 0
}

// leftover is a process left running at the end.
type leftover struct {
	PID     int    `json:"pid"`
	Command string `json:"command"`
}

// alive lists the processes the checker is responsible for that still
// run: its descendants (but for its own stop command, if any) and the
// server processes it saw.
func (p *procs) alive(except int) []leftover {
	pids := map[int]bool{}
	for _, pid := range proc.Descendants(p.self) {
		pids[pid] = true
	}
	p.mu.Lock()
	for pid := range p.seen {
		pids[pid] = true
	}
	p.mu.Unlock()
	if except > 0 {
		delete(pids, except)
		for _, d := range proc.Descendants(except) {
			delete(pids, d)
		}
	}
	var out []leftover
	for pid := range pids {
		if proc.Gone(pid) {
			continue
		}
		args, _ := proc.Cmdline(pid)
		out = append(out, leftover{PID: pid, Command: strings.Join(args, " ")})
	}
	slices.SortFunc(out, func(a, b leftover) int { return a.PID - b.PID })
	return out
}

// waitGone waits, bounded by ctx, until none of the processes alive lists
// is left, polling (a descendant's exit sends no event to the checker
// unless it is a child).
func (p *procs) waitGone(ctx context.Context, except int) []leftover {
	for {
		left := p.alive(except)
		if len(left) == 0 || ctx.Err() != nil {
			return left
		}
		sleep(ctx, 20*time.Millisecond)
	}
}

// killAll kills every process alive lists, and waits (bounded) until they
// are gone; the reaper reaps those that are the checker's children.
func (p *procs) killAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		left := p.alive(0)
		if len(left) == 0 {
			return
		}
		for _, l := range left {
			_ = unix.Kill(l.PID, unix.SIGKILL)
		}
		sleep(ctx, 20*time.Millisecond)
	}
}

// end kills whatever is left, stops the reaper and waits for it and for
// every command's Wait. It is called once, last.
func (p *procs) end() {
	p.killAll()
	close(p.stop)
	p.wg.Wait()
	ossignal.Stop(p.sigs)
}

// readPIDFile reads a PID file: 0 if there is none or it holds no pid.
func readPIDFile(path string) int {
	if path == "" {
		return 0
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var pid int
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d", &pid); err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// signal sends sig to pid, which must be alive: a zombie is not.
func signal(pid int, sig syscall.Signal) error {
	if pid <= 0 || proc.Gone(pid) {
		return fmt.Errorf("no process %d", pid)
	}
	if err := unix.Kill(pid, sig); err != nil {
		return fmt.Errorf("%s to %d: %w", unix.SignalName(sig), pid, err)
	}
	return nil
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
