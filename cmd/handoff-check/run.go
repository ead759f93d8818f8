//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/handoff-go/handoff/internal/proc"
	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// probePause is the pause between two probes while the checker waits for
// the server to answer or for a new generation.
const probePause = 2 * time.Millisecond

// sampleEvery is how often the checker looks at the connections of a
// generation that is on its way out.
const sampleEvery = 5 * time.Millisecond

// runner is one check: one server command, its upgrades and its load. The
// main goroutine runs the schedule; the load, the exit watches and the
// connection samplers are goroutines it starts and waits for.
type runner struct {
	cfg  config
	p    *procs
	prog io.Writer // progress lines; io.Discard with -quiet

	main        *command  // the server command
	owners      bool      // the probe tells which process answers
	serving     int       // the process that answered the last probe (or the PID file's)
	lastProbeAt time.Time // the end of the last probe answered by serving
	started     time.Time
	loadStart   time.Time
	loadEnd     time.Time

	upgrades []*upgradeRec
	usage    []proc.Usage // the serving process: after the warm-up, before each trigger, at the end
	stopped  stopRec
	left     []leftover
	res      *upgradertest.Result
	reasons  []string // why the check fails, so far

	requests, failed atomic.Int64 // counted as the load runs, for the progress lines
}

// upgradeRec is one upgrade as the checker saw it.
type upgradeRec struct {
	n          int
	oldPID     int // the process that answered before the trigger
	oldFilePID int // the PID file's pid before the trigger; 0 without -pidfile
	newPID     int // the process that answered first after it; 0 if unknown
	start      time.Time
	servingAt  time.Time // the end of the first response of the new generation
	oldExitAt  time.Time
	oldConns   map[string]time.Time // the client connections the old generation held after the trigger, by client address: the last time seen
	oldProbeAt time.Time            // the end of the last probe the old generation answered
	cmdEnd     time.Time
	cmdStatus  *int
	probeErrs  int
	completed  bool
	err        string
}

// stopRec is the final stop.
type stopRec struct {
	pid    int // the process signalled; 0 for a stop command
	start  time.Time
	exitAt time.Time
	status *int // its exit status, if the checker reaped it
	err    string
}

func (r *runner) progress(format string, a ...any) {
	fmt.Fprintf(r.prog, "handoff-check: "+format+"\n", a...)
}

func (r *runner) fail(format string, a ...any) {
	r.reasons = append(r.reasons, fmt.Sprintf(format, a...))
}

// run carries out the check. It returns when every process it started is
// gone and every goroutine it started has ended.
func (r *runner) run(ctx context.Context) {
	r.started = time.Now()
	if err := r.startServer(ctx); err != nil {
		r.fail("%v", err)
		r.stopServer(ctx)
		return
	}
	if err := r.preflight(); err != nil {
		r.fail("%v", err)
		r.stopServer(ctx)
		return
	}

	loadCtx, stopLoad := context.WithCancel(context.Background())
	results := make(chan *upgradertest.Result, 1)
	lc := r.loadConfig()
	r.progress("load: %s", describeLoad(lc))
	r.loadStart = time.Now()
	go func() { results <- upgradertest.Run(loadCtx, lc) }()

	sleep(ctx, r.cfg.WarmUp)
	r.usage = append(r.usage, r.usageOf(r.serving))
	for i := 1; i <= r.cfg.Upgrades && ctx.Err() == nil; i++ {
		u := r.upgrade(ctx, i)
		r.upgrades = append(r.upgrades, u)
		if !u.completed {
			if ctx.Err() == nil { // else the interruption is the reason
				r.progress("upgrade %d/%d did not complete: %s", i, r.cfg.Upgrades, u.err)
				r.fail("upgrade %d of %d did not complete: %s", i, r.cfg.Upgrades, u.err)
			}
			break
		}
		r.progress("upgrade %d/%d: %s; %d requests, %d failed so far", i, r.cfg.Upgrades, u.summary(), r.requests.Load(), r.failed.Load())
		if i < r.cfg.Upgrades {
			sleep(ctx, r.cfg.Interval)
		}
	}
	sleep(ctx, r.cfg.WarmUp)
	if s := r.currentServing(); s > 0 {
		r.usage = append(r.usage, r.usageOf(s))
	}
	stopLoad()
	r.res = <-results
	r.loadEnd = time.Now()
	if err := context.Cause(ctx); err != nil {
		r.fail("%v", err)
	}
	r.stopServer(ctx)
}

// startServer starts the server command and waits until it answers.
func (r *runner) startServer(ctx context.Context) error {
	c, err := r.p.start(r.cfg.Server, nil)
	if err != nil {
		return fmt.Errorf("cannot start the server command: %w", err)
	}
	r.main = c
	r.progress("started %s (pid %d); waiting for it to answer %s on %s", strings.Join(r.cfg.Server, " "), c.pid, r.cfg.Probe, r.cfg.Addr)
	t0 := time.Now()
	deadline := t0.Add(r.cfg.ReadyTimeout)
	var last answer
	for {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		last = r.p.probe(r.cfg.Addr, r.cfg.Host, r.cfg.Probe, r.cfg.Timeout, []int{c.pid}, readPIDFile(r.cfg.PIDFile))
		filePID := readPIDFile(r.cfg.PIDFile)
		if last.ok && (r.cfg.PIDFile == "" || filePID > 0 && !proc.Gone(filePID)) {
			r.owners = last.owner > 0
			r.serving = last.owner
			if !r.owners {
				r.serving = filePID
			}
			break
		}
		select {
		case <-c.done:
			// A command that exits 0 may have left its server running
			// (a daemon): only one that failed, or left nothing, is over.
			if c.info.status != 0 || len(proc.Descendants(r.p.self)) == 0 {
				return fmt.Errorf("the server command %s before it answered on %s", c.info, r.cfg.Addr)
			}
		default:
		}
		if time.Now().After(deadline) {
			why := "no answer"
			switch {
			case last.err != nil:
				why = last.err.Error()
			case r.cfg.PIDFile != "":
				why = "the PID file " + r.cfg.PIDFile + " names no live process"
			}
			return fmt.Errorf("the server did not answer within %v (-ready-timeout): %s", r.cfg.ReadyTimeout, why)
		}
		sleep(ctx, 20*time.Millisecond)
	}
	r.p.see(r.serving)
	how := fmt.Sprintf("pid %d answers", r.serving)
	if !r.owners {
		how = fmt.Sprintf("it answers; no process the checker can see holds the connection, so it follows the PID file (pid %d)", r.serving)
		if r.cfg.PIDFile == "" && r.cfg.UpgradeCmd == "" {
			return fmt.Errorf("the server answers, but no process the checker can see holds the connection (is it another user's, or in another namespace?): give -pidfile, or -upgrade-cmd")
		}
		if r.cfg.PIDFile == "" {
			how = "it answers; no process the checker can see holds the connection, so an upgrade completes when the command has ended and the server answers"
		}
	}
	r.progress("%s (after %v)", how, time.Since(t0).Round(time.Millisecond))
	return nil
}

// preflight sends each request once, so that a wrong path or method fails
// the check before any upgrade, with its own reason.
func (r *runner) preflight() error {
	reqs := append([]upgradertest.Request(nil), r.cfg.Requests...)
	for _, x := range []*upgradertest.Request{r.cfg.Slow, r.cfg.Stream} {
		if x != nil {
			reqs = append(reqs, *x)
		}
	}
	for _, q := range reqs {
		timeout := r.cfg.Timeout
		if r.cfg.Stream != nil && q.Path == r.cfg.Stream.Path {
			timeout += r.cfg.StreamTime
		}
		if a := (*procs)(nil).probe(r.cfg.Addr, r.cfg.Host, q, timeout, nil, 0); !a.ok {
			return fmt.Errorf("before any upgrade, %s failed: %v (check -request, -slow, -stream)", q, a.err)
		}
	}
	return nil
}

// loadConfig is the load of the flags.
func (r *runner) loadConfig() upgradertest.Config {
	c := r.cfg
	per, extra := c.Clients/3, c.Clients%3
	lc := upgradertest.Config{
		Addr: c.Addr,
		Workers: map[upgradertest.Kind]int{
			upgradertest.KeepAliveChecked: per + min(extra, 1),
			upgradertest.KeepAliveBlind:   per + max(extra-1, 0),
			upgradertest.NewConn:          per,
		},
		Pause:      time.Duration(float64(c.Clients) / c.Rate * float64(time.Second)),
		StreamTime: c.StreamTime,
		Timeout:    c.Timeout,
		Requests:   c.Requests,
		Host:       c.Host,
		H2Streams:  8,
		OnSample: func(s upgradertest.Sample) {
			r.requests.Add(1)
			if s.Class.Failed() {
				r.failed.Add(1)
			}
		},
	}
	if c.Slow != nil {
		lc.Workers[upgradertest.Slow] = c.SlowClients
		lc.SlowRequest = c.Slow
	}
	if c.Stream != nil {
		lc.Workers[upgradertest.Stream] = c.StreamClients
		lc.StreamRequest = c.Stream
	}
	if c.H2C > 0 {
		lc.Workers[upgradertest.H2C] = c.H2C
		lc.Workers[upgradertest.H2Idle] = c.H2C
	}
	return lc
}

// describeLoad says what the load is, for the progress lines.
func describeLoad(lc upgradertest.Config) string {
	var parts []string
	for k := upgradertest.KeepAliveChecked; k <= upgradertest.GRPCStream; k++ {
		if n := lc.Workers[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, k))
		}
	}
	return fmt.Sprintf("%s clients, each pausing %v between requests", strings.Join(parts, ", "), lc.Pause.Round(time.Microsecond))
}

// usageOf reads what pid holds; zeros for a process that is gone.
func (r *runner) usageOf(pid int) proc.Usage {
	u, _ := proc.ReadUsage(pid)
	return u
}

// currentServing finds the process that answers now: the probe's answer,
// else the PID file's pid, else the last one known.
func (r *runner) currentServing() int {
	a := r.p.probe(r.cfg.Addr, r.cfg.Host, r.cfg.Probe, r.cfg.Timeout, []int{r.serving}, readPIDFile(r.cfg.PIDFile))
	switch {
	case a.ok && a.owner > 0:
		r.serving, r.lastProbeAt = a.owner, a.end
	case readPIDFile(r.cfg.PIDFile) > 0:
		r.serving = readPIDFile(r.cfg.PIDFile)
	}
	r.p.see(r.serving)
	return r.serving
}

// target is the process that gets the upgrade and stop signals.
func (r *runner) target() int {
	switch r.cfg.SignalTo {
	case toPIDFile:
		return readPIDFile(r.cfg.PIDFile)
	case toMain:
		if !proc.Gone(r.main.pid) {
			return r.main.pid
		}
	}
	return r.serving
}

// env is the environment of the upgrade and stop commands.
func (r *runner) env(n int) []string {
	return []string{
		"HANDOFF_CHECK_PID=" + strconv.Itoa(r.serving),
		"HANDOFF_CHECK_MAIN_PID=" + strconv.Itoa(r.main.pid),
		"HANDOFF_CHECK_ADDR=" + r.cfg.Addr,
		"HANDOFF_CHECK_UPGRADE=" + strconv.Itoa(n),
	}
}

// upgrade triggers upgrade n and waits, bounded by -upgrade-timeout, until
// it has completed: the trigger is done (signal sent; command ended with
// status 0), a process other than the old one has answered a probe (or,
// when the checker cannot see which process answers, the PID file names a
// new live pid, or the command has ended and the server answers), the old
// process has exited, and the PID file (with -pidfile) names a live pid
// other than the old one.
func (r *runner) upgrade(ctx context.Context, n int) *upgradeRec {
	old := r.currentServing()
	u := &upgradeRec{n: n, oldPID: old, oldFilePID: readPIDFile(r.cfg.PIDFile), oldProbeAt: r.lastProbeAt}
	r.usage = append(r.usage, r.usageOf(old))

	// Watch the old process from before the trigger, so that its exit
	// time is exact; sample its connections until it exits.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	exited := make(chan time.Time, 1)
	conns := make(chan map[string]time.Time, 1)
	if old > 0 {
		w, err := proc.WatchExit(old)
		if err != nil {
			u.err = fmt.Sprintf("cannot watch pid %d: %v", old, err)
			return u
		}
		go func() {
			defer w.Close()
			at, _ := w.Wait(wctx)
			exited <- at
		}()
	}
	// Which process served may be unknown (no PID file, no process the
	// checker can see): then the command's end and an answer complete the
	// upgrade.
	oldKnown := old > 0
	port := r.port()
	go func() { conns <- sampleConns(wctx, old, port) }()
	exitWait := exited // nil once received, or if nothing watches
	if !oldKnown {
		exitWait = nil
	}
	defer func() {
		stopWatch()
		if exitWait != nil {
			if at := <-exitWait; !at.IsZero() {
				u.oldExitAt = at
			}
		}
		u.oldConns = <-conns
	}()

	var cmd *command
	var err error
	u.start = time.Now()
	if r.cfg.UpgradeCmd != "" {
		cmd, err = r.p.start([]string{"sh", "-c", r.cfg.UpgradeCmd}, r.env(n))
		if err != nil {
			u.err = fmt.Sprintf("cannot start -upgrade-cmd: %v", err)
			return u
		}
	} else if err := signal(r.target(), r.cfg.Signal); err != nil {
		u.err = err.Error()
		return u
	}

	deadline := time.NewTimer(r.cfg.UpgradeTimeout)
	defer deadline.Stop()
	var cmdDone <-chan struct{}
	if cmd != nil {
		cmdDone = cmd.done
	}
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			u.err = context.Cause(ctx).Error()
			return u
		case <-deadline.C:
			u.err = u.missing(r, lastErr)
			return u
		case <-cmdDone:
			cmdDone = nil
			u.cmdEnd = cmd.info.at
			st := cmd.info.status
			u.cmdStatus = &st
			if st != 0 {
				u.err = fmt.Sprintf("-upgrade-cmd %s", cmd.info)
				return u
			}
		case at := <-exitWait:
			u.oldExitAt = at
			exitWait = nil
		default:
		}
		filePID := readPIDFile(r.cfg.PIDFile)
		fileOK := r.cfg.PIDFile == "" || filePID > 0 && filePID != u.oldFilePID && !proc.Gone(filePID)
		cmdOK := cmd == nil || !u.cmdEnd.IsZero()
		if u.servingAt.IsZero() {
			a := r.p.probe(r.cfg.Addr, r.cfg.Host, r.cfg.Probe, r.cfg.Timeout, []int{old, filePID}, filePID)
			switch {
			case !a.ok:
				u.probeErrs++
				lastErr = a.err
			case a.owner == old:
				u.oldProbeAt = a.end
			case r.owners && a.owner > 0 && a.owner != old:
				u.servingAt, u.newPID = a.end, a.owner
			case !r.owners && r.cfg.PIDFile != "" && fileOK:
				u.servingAt, u.newPID = a.end, filePID
			case !r.owners && r.cfg.PIDFile == "" && cmdOK:
				u.servingAt = a.end
			}
			if u.newPID > 0 {
				r.serving = u.newPID
				r.p.see(u.newPID)
			}
		}
		if !u.servingAt.IsZero() && (!u.oldExitAt.IsZero() || !oldKnown) && fileOK && cmdOK {
			u.completed = true
			if filePID > 0 {
				r.p.see(filePID)
			}
			return u
		}
		if u.servingAt.IsZero() {
			sleep(ctx, probePause)
		} else {
			sleep(ctx, sampleEvery)
		}
	}
}

// missing says what an upgrade that timed out was still waiting for.
func (u *upgradeRec) missing(r *runner, probeErr error) string {
	var what []string
	if r.cfg.UpgradeCmd != "" && u.cmdEnd.IsZero() {
		what = append(what, "-upgrade-cmd still running")
	}
	if u.servingAt.IsZero() {
		s := fmt.Sprintf("no process other than %d answered", u.oldPID)
		if u.oldPID <= 0 {
			s = "the server did not answer"
		}
		if probeErr != nil {
			s += fmt.Sprintf(" (%d probes failed, the last: %v)", u.probeErrs, probeErr)
		}
		what = append(what, s)
	}
	if u.oldExitAt.IsZero() && u.oldPID > 0 {
		what = append(what, fmt.Sprintf("the old process %d still runs", u.oldPID))
	}
	if r.cfg.PIDFile != "" {
		f := readPIDFile(r.cfg.PIDFile)
		switch {
		case f == u.oldFilePID:
			what = append(what, fmt.Sprintf("the PID file still names %d", f))
		case f == 0 || proc.Gone(f):
			what = append(what, fmt.Sprintf("the PID file names no live process (%d)", f))
		}
	}
	return fmt.Sprintf("after %v (-upgrade-timeout): %s", r.cfg.UpgradeTimeout, strings.Join(what, "; "))
}

// summary is the progress line of a completed upgrade.
func (u *upgradeRec) summary() string {
	s := fmt.Sprintf("%d → %d serving after %v, %d exited after %v", u.oldPID, u.newPID,
		u.servingAt.Sub(u.start).Round(100*time.Microsecond), u.oldPID, u.oldExitAt.Sub(u.start).Round(time.Millisecond))
	if u.newPID == 0 {
		s = fmt.Sprintf("serving again after %v, %d exited after %v",
			u.servingAt.Sub(u.start).Round(100*time.Microsecond), u.oldPID, u.oldExitAt.Sub(u.start).Round(time.Millisecond))
	}
	if u.probeErrs > 0 {
		s += fmt.Sprintf(", %d probes failed", u.probeErrs)
	}
	return s
}

// port is the server's port (-addr was checked by parseFlags).
func (r *runner) port() uint16 {
	_, p, _ := net.SplitHostPort(r.cfg.Addr)
	n, _ := strconv.ParseUint(p, 10, 16)
	return uint16(n)
}

// connStates are the states of a TCP connection whose socket a process may
// still hold: neither listening nor closed by it.
const connStates = 1<<proc.TCPEstablished | 1<<proc.TCPSynRecv | 1<<proc.TCPCloseWait |
	1<<proc.TCPFinWait1 | 1<<proc.TCPFinWait2 | 1<<proc.TCPLastAck | 1<<proc.TCPClosing

// sampleConns looks at pid's sockets every sampleEvery until pid is gone
// or ctx ends, and returns the client connections on port it was seen
// holding: the client's address and the last sample that saw it. A socket
// it has not seen before is classified from the kernel's table of
// connections, once.
func sampleConns(ctx context.Context, pid int, port uint16) map[string]time.Time {
	held := map[string]time.Time{}
	client := map[uint64]string{} // by inode: the client's address; "" if not a connection on port
	for ctx.Err() == nil {
		now := time.Now()
		inodes, err := proc.SocketInodes(pid)
		if err != nil || proc.Gone(pid) {
			return held
		}
		for ino := range inodes {
			if _, ok := client[ino]; ok {
				continue
			}
			socks, err := proc.TCPSockets(connStates)
			if err != nil {
				return held
			}
			for ino := range inodes {
				client[ino] = ""
			}
			for _, s := range socks {
				if inodes[s.Inode] && s.Local.Port() == port {
					client[s.Inode] = s.Remote.String()
				}
			}
			break
		}
		for ino := range inodes {
			if c := client[ino]; c != "" {
				held[c] = now
			}
		}
		sleep(ctx, sampleEvery)
	}
	return held
}

// stopServer stops the server (the stop signal or command), waits until
// every process of it is gone (bounded by -stop-timeout), and records
// what is left, which it then kills.
func (r *runner) stopServer(ctx context.Context) {
	if r.main == nil {
		return
	}
	if ctx.Err() != nil { // interrupted: no graceful stop
		r.stopped.err = "not stopped gracefully: " + context.Cause(ctx).Error()
		r.p.killAll()
		return
	}
	sctx, cancel := context.WithTimeout(context.Background(), r.cfg.StopTimeout)
	defer cancel()
	st := &r.stopped
	st.start = time.Now()
	var stopCmd *command
	if r.cfg.StopCmd != "" {
		c, err := r.p.start([]string{"sh", "-c", r.cfg.StopCmd}, r.env(0))
		if err != nil {
			st.err = fmt.Sprintf("cannot start -stop-cmd: %v", err)
		} else {
			stopCmd = c
		}
	} else {
		st.pid = r.target()
		if st.pid <= 0 || proc.Gone(st.pid) {
			st.pid = r.main.pid
		}
		r.p.see(st.pid)
		// Watched from before the signal, so that the exit time is exact.
		w, err := proc.WatchExit(st.pid)
		if err := signal(st.pid, r.cfg.StopSignal); err != nil && !proc.Gone(r.main.pid) {
			st.err = err.Error()
		}
		if err == nil {
			if at, err := w.Wait(sctx); err == nil {
				st.exitAt = at
			}
			w.Close()
		}
	}
	if stopCmd != nil {
		select {
		case <-stopCmd.done:
			if stopCmd.info.status != 0 {
				st.err = fmt.Sprintf("-stop-cmd %s", stopCmd.info)
			}
		case <-sctx.Done():
			st.err = fmt.Sprintf("-stop-cmd still running after %v (-stop-timeout)", r.cfg.StopTimeout)
		}
	}
	except := 0
	if stopCmd != nil && st.err != "" {
		except = stopCmd.pid // a stop command that hangs is not the server's process
	}
	left := r.p.waitGone(sctx, except)
	if st.pid > 0 {
		if st.pid == r.main.pid {
			select { // its status comes from its own Wait
			case <-r.main.done:
			case <-sctx.Done():
			}
		}
		r.p.reap() // the exit status, if it is the checker's child to reap
		if e, ok := r.p.exited(st.pid); ok {
			st.status = &e.status
		}
	}
	r.left = left
	if len(left) > 0 {
		var ls []string
		for _, l := range left {
			ls = append(ls, fmt.Sprintf("%d (%s)", l.PID, l.Command))
		}
		r.fail("%d process(es) left behind %v after the stop (%s): %s", len(left), r.cfg.StopTimeout, r.cfg.stopHow(), strings.Join(ls, ", "))
	}
	if st.err != "" {
		r.fail("stop: %s", st.err)
	}
	r.p.killAll()
}
