//go:build linux

// Command upgrade is handoff's upgrade benchmark: it builds five servers
// with the same handlers and upgrades or restarts each the same number of
// times, upgrade by upgrade in turn (handoff, tableflip, naive,
// handoff-drain, tableflip-signals-first, then handoff again...), each
// under the same load during its turn, so that the machine's load, which
// drifts, weighs on every target alike and cancels out of the ratios. It
// prints a table (and writes a JSON file) of failed requests, keep-alive
// reconnects, latency around upgrades, upgrade timings measured from
// outside, and the serving process's file descriptors and memory.
//
//	go run ./bench/upgrade                  # 100 upgrades per target
//	go run ./bench/upgrade -quick           # 5 upgrades per target, a smoke run
//	go run ./bench/upgrade -targets handoff,tableflip -upgrades 20
//
// Targets:
//   - handoff: examples/httpserver, probation 0, upgraded with SIGHUP;
//     idle keep-alive connections are handed to the new generation.
//   - tableflip: bench/tableflip-server, the same handlers on plain
//     tableflip v1.2.3 with the http.Server.Shutdown pattern of its README,
//     upgraded with SIGHUP.
//   - naive: bench/naive-server, restarted by stopping and starting: the
//     driver sends SIGTERM, waits for the process to exit (it drains with
//     http.Server.Shutdown), then starts a new process on the same address.
//   - handoff-drain: handoff with the hand-over off (-no-handover): every
//     keep-alive connection is drained (Connection: close, idle ones
//     closed after the grace), as before issue 14.
//   - tableflip-signals-first: tableflip with its signals subscribed before
//     it serves (-signals-first), the guarantee handoff keeps: a process
//     that accepts never meets a signal's default disposition. It prices
//     that guarantee in the time to serve.
//
// Run it from the handoff module (it calls go build). Everything runs on
// 127.0.0.1. Every server it started is killed when it ends or is
// interrupted, and it checks that none is left.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	ossignal "os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// config is the benchmark's configuration, from its flags.
type config struct {
	Upgrades   int           `json:"upgrades"`
	Interval   time.Duration `json:"interval_ns"`
	Clients    int           `json:"clients"`
	Streams    int           `json:"streams"`
	Pause      time.Duration `json:"pause_ns"`
	SlowTime   time.Duration `json:"slow_ns"`
	StreamTime time.Duration `json:"stream_ns"`
	WarmUp     time.Duration `json:"warm_up_ns"`
	Near       time.Duration `json:"near_ns"`
	Wait       time.Duration `json:"wait_ns"`
	Targets    []string      `json:"targets"`
	Quick      bool          `json:"quick"`
}

func main() {
	var (
		cfg     config
		targets string
		out     string
		keep    bool
	)
	flag.IntVar(&cfg.Upgrades, "upgrades", 100, "upgrades (restarts, for naive) per target, one per round")
	flag.DurationVar(&cfg.Interval, "interval", 500*time.Millisecond, "load after the end of an upgrade (new pid serving, old pid gone), before the next target's turn")
	flag.IntVar(&cfg.Clients, "clients", 24, "load clients, split evenly among keep-alive checked, keep-alive blind, new-connection and 200 ms slow requests")
	flag.IntVar(&cfg.Streams, "streams", 2, "clients of 3 s streamed responses, besides -clients")
	flag.DurationVar(&cfg.Pause, "pause", 10*time.Millisecond, "pause of each client between two requests (the rate limit)")
	flag.DurationVar(&cfg.WarmUp, "warmup", time.Second, "load of a target's turn before its signal (and after the last upgrade)")
	flag.DurationVar(&cfg.Wait, "wait", 60*time.Second, "bound on each wait of an upgrade (new pid serving; old pid gone)")
	flag.StringVar(&targets, "targets", strings.Join(targetNames, ","), "comma-separated targets, in the order of their turns: "+strings.Join(targetNames, ", "))
	flag.BoolVar(&cfg.Quick, "quick", false, "a smoke run: 5 upgrades per target unless -upgrades is given")
	flag.StringVar(&out, "out", filepath.Join("bench", "results", "upgrade.json"), "write the results here as JSON")
	flag.BoolVar(&keep, "keep", false, "keep the build directory with the servers' logs (the servers are still killed)")
	flag.Parse()
	cfg.SlowTime, cfg.StreamTime, cfg.Near = 200*time.Millisecond, 3*time.Second, time.Second
	if cfg.Quick && !flagSet("upgrades") {
		cfg.Upgrades = 5
	}
	for _, t := range strings.Split(targets, ",") {
		if t = strings.TrimSpace(t); t != "" {
			cfg.Targets = append(cfg.Targets, t)
		}
	}
	if err := run(cfg, out, keep); err != nil {
		fmt.Fprintln(os.Stderr, "upgrade:", err)
		os.Exit(1)
	}
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func run(cfg config, out string, keep bool) error {
	chosen, err := chooseTargets(cfg)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "handoff-bench-")
	if err != nil {
		return err
	}
	cleanup := cleanUpAlways(dir, keep)
	defer cleanup()
	if err := build(chosen, dir); err != nil {
		return err
	}

	rep := report{
		Command:   strings.Join(os.Args, " "),
		Started:   time.Now().UTC().Format(time.RFC3339),
		GoVersion: runtime.Version(),
		CPUs:      runtime.NumCPU(),
		LoadStart: loadAvg(),
		Config:    cfg,
	}
	fmt.Printf("%d rounds: one upgrade of each of %d targets per round, in turn, load %s ...\n", cfg.Upgrades, len(chosen), loadAvg())
	ctx, cancel := context.WithTimeout(context.Background(),
		time.Duration(cfg.Upgrades*len(chosen))*(2*cfg.Wait+cfg.Interval+2*cfg.WarmUp)+5*time.Minute)
	runners := measureAll(ctx, cfg, chosen, dir)
	cancel()
	for _, r := range runners {
		res := analyze(cfg, r.t, r.raw)
		if r.err != nil {
			res.Error = r.err.Error()
			fmt.Printf("%s: error: %s\n", r.t.name, res.Error)
		}
		rep.Targets = append(rep.Targets, res)
	}
	rep.LoadEnd = loadAvg()
	rep.finish()

	fmt.Println()
	rep.print(os.Stdout)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := rep.write(out); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s\n", out)
	return problems(rep, dir)
}

// chooseTargets checks cfg and returns its targets.
func chooseTargets(cfg config) ([]target, error) {
	if cfg.Upgrades < 1 || cfg.Upgrades > 10_000 {
		return nil, fmt.Errorf("-upgrades %d: want 1..10000", cfg.Upgrades)
	}
	if cfg.Clients < 4 || cfg.Streams < 0 {
		return nil, fmt.Errorf("-clients %d -streams %d: want at least 4 clients", cfg.Clients, cfg.Streams)
	}
	var chosen []target
	for _, name := range cfg.Targets {
		t, ok := targetByName(name)
		if !ok {
			return nil, fmt.Errorf("unknown target %q (want one of %s)", name, strings.Join(targetNames, ", "))
		}
		chosen = append(chosen, t)
	}
	return chosen, nil
}

// cleanUpAlways makes sure that nothing is left running: it returns the
// clean-up (kill every server in dir, then remove dir unless keep), to run
// on return, and runs it on an interrupt too, which then ends the process
// at once.
func cleanUpAlways(dir string, keep bool) (cleanup func()) {
	cleanup = func() {
		killUnder(dir)
		if keep {
			fmt.Fprintf(os.Stderr, "kept %s (binaries and logs)\n", dir)
			return
		}
		os.RemoveAll(dir)
	}
	sigs := make(chan os.Signal, 1)
	ossignal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "\nupgrade: %v: killing the servers\n", s)
		cleanup()
		os.Exit(130)
	}()
	return cleanup
}

// build builds the servers of the targets into dir.
func build(chosen []target, dir string) error {
	fmt.Printf("building %d target(s) into %s ...\n", len(chosen), dir)
	for i := range chosen {
		chosen[i].bin = filepath.Join(dir, chosen[i].name)
		cmd := exec.Command("go", "build", "-tags", "benchmin", "-o", chosen[i].bin, chosen[i].pkg)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s (run from the handoff module): %v\n%s", chosen[i].pkg, err, b)
		}
	}
	return nil
}

// problems is an error that names the targets that failed and the servers
// left running, or nil.
func problems(rep report, dir string) error {
	var msgs []string
	for _, r := range rep.Targets {
		if r.Error != "" {
			msgs = append(msgs, r.Target+": "+r.Error)
		}
		if len(r.Leftover) > 0 {
			msgs = append(msgs, fmt.Sprintf("%s: processes left running (killed): %v", r.Target, r.Leftover))
		}
	}
	if left := processesUnder(dir); len(left) > 0 {
		msgs = append(msgs, fmt.Sprintf("processes still running at the end (killed): %v", left))
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return nil
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
