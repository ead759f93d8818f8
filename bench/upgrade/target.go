//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// target is one server under test.
type target struct {
	name  string
	pkg   string
	naive bool   // restarted by stop and start, not upgraded in place
	bin   string // the built binary
}

// targetNames are the targets, in the order of their turns.
var targetNames = []string{"handoff", "tableflip", "naive", "handoff-drain", "tableflip-signals-first"}

func targetByName(name string) (target, bool) {
	switch name {
	case "handoff", "handoff-drain":
		return target{name: name, pkg: "github.com/handoff-go/handoff/examples/httpserver"}, true
	case "tableflip", "tableflip-signals-first":
		return target{name: name, pkg: "github.com/handoff-go/handoff/bench/tableflip-server"}, true
	case "naive":
		return target{name: name, pkg: "github.com/handoff-go/handoff/bench/naive-server", naive: true}, true
	}
	return target{}, false
}

// handoff reports whether t is examples/httpserver, which logs JSON events.
func (t target) handoff() bool { return strings.HasPrefix(t.name, "handoff") }

func (t target) args(addr, pidFile string) []string {
	switch t.name {
	case "handoff":
		return []string{"-addr", addr, "-pidfile", pidFile, "-log-json", "-probation", "0", "-drain-timeout", "30s"}
	case "handoff-drain":
		return []string{"-addr", addr, "-pidfile", pidFile, "-log-json", "-probation", "0", "-drain-timeout", "30s", "-no-handover"}
	case "tableflip":
		return []string{"-addr", addr, "-pidfile", pidFile}
	case "tableflip-signals-first":
		return []string{"-addr", addr, "-pidfile", pidFile, "-signals-first"}
	}
	return []string{"-addr", addr}
}

// upgradeRec is one upgrade (or restart), as the driver saw it.
type upgradeRec struct {
	start       time.Time
	exitAt      time.Time
	probeNewAt  time.Time
	Old         int `json:"old_pid"`
	New         int `json:"new_pid"`
	ProbeErrors int `json:"probe_errors"`
	// The serving process just before the signal.
	Proc procStat `json:"proc_before_signal"`
	// Filled in by analyze.
	SignalAt     time.Time `json:"signal_at"`
	OldExitedAt  time.Time `json:"old_exited_at"`
	LastOldEndAt time.Time `json:"old_last_response_at"`
	AtS          float64   `json:"at_s"`
	ServingMS    float64   `json:"signal_to_serving_ms"`
	ExitedMS     float64   `json:"signal_to_old_exited_ms"`
	LastToExit   float64   `json:"last_response_to_exit_ms"`
	OldAnswered  int       `json:"old_answered_after_signal"`
}

// rawRun is everything measured on one target, before analysis.
type rawRun struct {
	upgrades   []upgradeRec
	probes     []probeAnswer
	res        *upgradertest.Result // the samples of every turn
	stats      []procStat           // the serving process, before each signal
	before     procStat             // after the first warm-up
	end        procStat             // after the last turn
	cpu        time.Duration        // the driver's, during this target's turns
	loadStart  time.Time            // the start of the first turn's load
	loadTime   time.Duration        // the load's time, over every turn
	leftover   []int
	selfServed []time.Duration // handoff's own signal→accepting, from its log
	stopped    bool
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// runner runs one target's turns: its server, the pid that serves, and
// what was measured so far.
type runner struct {
	cfg     config
	t       target
	s       *server
	logPath string
	logFile *os.File
	cur     int
	raw     *rawRun
	err     error // the error that ended this target's turns
}

// start starts t's server and waits until it serves.
func (r *runner) start(dir string) error {
	r.raw = &rawRun{res: &upgradertest.Result{}}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	r.logPath = filepath.Join(dir, r.t.name+".log")
	if r.logFile, err = os.Create(r.logPath); err != nil {
		return err
	}
	r.s = &server{target: r.t, addr: addr, pidFile: filepath.Join(dir, r.t.name+".pid"), log: r.logFile}
	if err := r.s.start(); err != nil {
		return err
	}
	if r.cur, _, _, err = waitPID(addr, 0, 30*time.Second); err != nil {
		return fmt.Errorf("server did not start: %w", err)
	}
	return nil
}

// turn is upgrade n of the target: its load for cfg.WarmUp, the upgrade
// (or restart) under the load, cfg.Interval more of load, and the load
// stopped; only this target is loaded meanwhile. last adds cfg.WarmUp of
// load after the upgrade and takes the final figures.
func (r *runner) turn(ctx context.Context, n int, last bool) error {
	raw := r.raw
	load := loadConfig(r.cfg, r.s.addr)
	cpu0 := cpuTime()
	start := time.Now()
	if raw.loadStart.IsZero() {
		raw.loadStart = start
	}
	stopLoad := upgradertest.Start(ctx, load)
	sleep(ctx, r.cfg.WarmUp)
	if n == 1 {
		raw.before = statOf(r.cur)
	}
	u, answers, err := r.s.upgrade(n, r.cur, r.cfg.Wait)
	raw.stats = append(raw.stats, u.Proc)
	raw.probes = append(raw.probes, answers...)
	if err == nil {
		raw.upgrades = append(raw.upgrades, u)
		r.cur = u.New
		sleep(ctx, r.cfg.Interval)
		if last {
			sleep(ctx, r.cfg.WarmUp)
			raw.end = statOf(r.cur)
		}
	}
	res := stopLoad()
	raw.loadTime += time.Since(start)
	raw.cpu += cpuTime() - cpu0
	raw.res.Samples = append(raw.res.Samples, res.Samples...)
	if err == nil && ctx.Err() != nil {
		err = fmt.Errorf("ran out of time after %d upgrades", len(raw.upgrades))
	}
	return err
}

// finish stops the server gracefully and checks that nothing of it is
// left.
func (r *runner) finish() {
	raw := r.raw
	if r.s != nil && r.cur != 0 {
		err := stopGracefully(r.cur)
		raw.stopped = err == nil
		if r.err == nil {
			r.err = err
		}
	}
	time.Sleep(100 * time.Millisecond) // let a parent reap
	raw.leftover = processesOf(r.t.bin)
	killBinary(r.t.bin)
	if r.logFile != nil {
		r.logFile.Close()
	}
	if r.t.handoff() {
		raw.selfServed = acceptingDurations(r.logPath)
		// One "accepting" event per upgrade: another count means that the
		// server's log changed under this reader.
		if r.err == nil && len(raw.selfServed) != len(raw.upgrades) {
			fmt.Fprintf(os.Stderr, "%s: %d \"accepting\" events in its log for %d upgrades: its own signal→accepting figure is off (rerun with -keep to read the log)\n",
				r.t.name, len(raw.selfServed), len(raw.upgrades))
		}
	}
}

// measureAll starts every target's server, then runs cfg.Upgrades rounds
// in each of which every target, in turn, is loaded and upgraded once (so
// that the machine's load, which drifts, weighs on every target alike),
// then stops them. A target whose upgrade fails takes no more turns.
func measureAll(ctx context.Context, cfg config, targets []target, dir string) []*runner {
	runners := make([]*runner, len(targets))
	for i, t := range targets {
		runners[i] = &runner{cfg: cfg, t: t}
		if err := runners[i].start(dir); err != nil {
			runners[i].err = err
		}
	}
	for n := 1; n <= cfg.Upgrades && ctx.Err() == nil; n++ {
		if n == 1 || n%10 == 0 || n == cfg.Upgrades {
			fmt.Printf("round %d of %d, load %s\n", n, cfg.Upgrades, loadAvg())
		}
		for _, r := range runners {
			if r.err != nil {
				continue
			}
			if err := r.turn(ctx, n, n == cfg.Upgrades); err != nil {
				r.err = err
				fmt.Printf("%s: %v\n", r.t.name, err)
			}
		}
	}
	for _, r := range runners {
		r.finish()
	}
	return runners
}

// loadConfig is the load of cfg on addr: cfg.Clients split evenly among
// keep-alive checked, keep-alive blind, new-connection and slow requests
// (the keep-alive clients take the rest), and cfg.Streams streams.
func loadConfig(cfg config, addr string) upgradertest.Config {
	per := cfg.Clients / 4
	return upgradertest.Config{
		Addr: addr,
		Workers: map[upgradertest.Kind]int{
			upgradertest.KeepAliveChecked: per + (cfg.Clients-4*per+1)/2,
			upgradertest.KeepAliveBlind:   per + (cfg.Clients-4*per)/2,
			upgradertest.NewConn:          per,
			upgradertest.Slow:             per,
			upgradertest.Stream:           cfg.Streams,
		},
		Pause:      cfg.Pause,
		SlowTime:   cfg.SlowTime,
		StreamTime: cfg.StreamTime,
	}
}

// server is a target's server as the driver runs it: the process it
// started last, and how to start another.
type server struct {
	target
	addr, pidFile string
	log           *os.File     // the servers' output
	exited        <-chan error // the Wait of the process started last
}

// start starts a server process.
func (s *server) start() error {
	cmd := exec.Command(s.bin, s.args(s.addr, s.pidFile)...)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	// Its own process group, so that a terminal's ^C reaches only the
	// driver, which then kills every server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.exited = exited
	return nil
}

// upgrade makes upgrade n: it upgrades the server whose pid cur serves in
// place (SIGHUP), or restarts it (naive: SIGTERM, wait for the exit, start
// again), waiting up to wait for each step. It returns the record of the
// upgrade, the answers of the driver's probe, and an error that ends the
// run.
func (s *server) upgrade(n, cur int, wait time.Duration) (upgradeRec, []probeAnswer, error) {
	u := upgradeRec{Old: cur, Proc: statOf(cur)}
	exited := watchExit(cur, 2*wait)
	u.start = time.Now()
	var answers []probeAnswer
	var err error
	if s.naive {
		_ = syscall.Kill(cur, syscall.SIGTERM)
		select {
		case u.exitAt = <-exited:
		case <-time.After(wait):
		}
		if u.exitAt.IsZero() {
			return u, nil, fmt.Errorf("restart %d: pid %d did not exit within %v", n, cur, wait)
		}
		<-s.exited
		if err := s.start(); err != nil {
			return u, nil, fmt.Errorf("restart %d: %w", n, err)
		}
		u.New, answers, u.ProbeErrors, err = waitPID(s.addr, cur, wait)
	} else {
		_ = syscall.Kill(cur, syscall.SIGHUP)
		u.New, answers, u.ProbeErrors, err = waitPID(s.addr, cur, wait)
		if err == nil {
			u.exitAt = <-exited
			if u.exitAt.IsZero() {
				err = fmt.Errorf("old pid %d did not exit within %v", cur, 2*wait)
			}
		}
	}
	if err != nil {
		return u, answers, fmt.Errorf("upgrade %d: %w", n, err)
	}
	u.probeNewAt = answers[len(answers)-1].end
	return u, answers, nil
}

// stopGracefully sends pid SIGTERM and waits up to 40 s for it to exit.
func stopGracefully(pid int) error {
	exited := watchExit(pid, 40*time.Second)
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if at := <-exited; at.IsZero() {
		return fmt.Errorf("pid %d did not stop within 40s of SIGTERM", pid)
	}
	return nil
}

// acceptingDurations reads handoff's own signal→serving durations (event
// "accepting") from the JSON log of examples/httpserver.
func acceptingDurations(path string) []time.Duration {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var ds []time.Duration
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e struct {
			Event    string          `json:"event"`
			Duration json.RawMessage `json:"duration"`
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Event != "accepting" {
			continue
		}
		if n, err := strconv.ParseInt(string(e.Duration), 10, 64); err == nil {
			ds = append(ds, time.Duration(n))
		}
	}
	return ds
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
