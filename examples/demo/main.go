//go:build unix

// Command demo shows handoff at work in under a minute: it builds the example
// server (and a deliberately broken build of it), starts it serving HTTP/1.1
// and h2c, HTTPS with HTTP/2, and gRPC, puts load on it from raw clients that
// never retry, upgrades it several times, once to the broken binary, which is
// rolled back, and prints a report: requests, failures, latency, what the
// HTTP/2 connections saw (a GOAWAY or none), upgrades committed and rolled
// back. Next to the report it writes a chart of the latency over time with
// the upgrades marked (-chart, an SVG). While it runs, the server's admin
// page (package admin) is open at the address it prints: watch the
// generations change there.
//
//	go run ./examples/demo
//
// Run it from the handoff module. It leaves nothing running: the server is
// stopped (SIGTERM, drained) at the end, and killed if the demo is
// interrupted.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"os"
	"os/exec"
	ossignal "os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
	"github.com/handoff-go/handoff/upgrader/upgradertest/grpcload"
)

const serverPkg = "github.com/handoff-go/handoff/examples/httpserver"

func main() {
	upgrades := flag.Int("upgrades", 5, "good upgrades to perform (plus one broken)")
	interval := flag.Duration("interval", 500*time.Millisecond, "pause between upgrades")
	chart := flag.String("chart", "demo-latency.svg", "write the chart of latency over time, upgrades marked, to this SVG file (empty: none)")
	adminAddr := flag.String("admin-addr", "127.0.0.1:0", "serve the server's admin page on this address while the demo runs")
	flag.Parse()
	if err := run(*upgrades, *interval, *chart, *adminAddr); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(upgrades int, interval time.Duration, chart, adminAddr string) error {
	dir, err := os.MkdirTemp("", "handoff-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d := &demo{bin: filepath.Join(dir, "httpserver"), pidFile: filepath.Join(dir, "server.pid"), adminAddr: adminAddr}

	good, broken, err := build(dir)
	if err != nil {
		return err
	}
	if err := d.install(good); err != nil {
		return err
	}
	certFile, keyFile, pool, err := upgradertest.WriteCert(dir)
	if err != nil {
		return err
	}
	if err := d.start(certFile, keyFile); err != nil {
		return err
	}
	// Whatever happens, leave nothing running.
	defer killAll(d.bin)
	killOnInterrupt(d.bin)

	httpAddr, tlsAddr, grpcAddr, err := d.serving()
	if err != nil {
		return err
	}
	load := demoLoad(httpAddr, tlsAddr, grpcAddr, pool)
	printLoad()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopLoad := upgradertest.Start(ctx, load)
	time.Sleep(time.Second) // steady state before the first upgrade

	var done []upgradeResult
	for i, src := range plan(upgrades, good, broken) {
		u, err := d.upgrade(i+1, src)
		if err != nil {
			return err
		}
		done = append(done, u)
		time.Sleep(interval)
	}
	time.Sleep(time.Second)
	fmt.Println("stopping the load and the server ...")
	res := stopLoad()
	if err := d.stop(); err != nil {
		return err
	}

	printReport(res, done)
	if chart != "" {
		if err := writeChart(chart, res, done); err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		fmt.Printf("latency over time, upgrades marked: %s\n", chart)
	}
	if left := processesOf(d.bin); len(left) > 0 {
		return fmt.Errorf("processes left running: %v", left)
	}
	fmt.Println("nothing left running.")
	if res.Failed() > 0 {
		return fmt.Errorf("%d requests failed:\n%s", res.Failed(), res.FirstFailures(10))
	}
	return nil
}

// build builds the example server and a deliberately broken build of it
// (one that fails its health check during probation) into dir.
func build(dir string) (good, broken string, err error) {
	fmt.Println("building the example server and a deliberately broken build of it ...")
	began := time.Now()
	good, broken = filepath.Join(dir, "httpserver-good"), filepath.Join(dir, "httpserver-broken")
	for _, b := range []struct{ out, mode string }{{good, ""}, {broken, "probation-unhealthy"}} {
		args := []string{"build", "-o", b.out}
		if b.mode != "" {
			args = append(args, "-ldflags", "-X main.breakMode="+b.mode)
		}
		if out, err := exec.Command("go", append(args, serverPkg)...).CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s (run the demo from the handoff module): %v\n%s", serverPkg, err, out)
		}
	}
	fmt.Printf("built in %v\n", time.Since(began).Round(100*time.Millisecond))
	return good, broken, nil
}

// demo is the server the demo runs: the binary that deploys replace, its
// PID file, and its log.
type demo struct {
	bin, pidFile string
	adminAddr    string // "" for none
	logs         *logs
}

// install puts the binary src in place, as a deploy replaces a binary.
func (d *demo) install(src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(d.bin+".new", b, 0o755); err != nil {
		return err
	}
	return os.Rename(d.bin+".new", d.bin) // how a deploy replaces a binary
}

// start starts the server, its JSON log going to d.logs.
func (d *demo) start(certFile, keyFile string) error {
	// Three servers in one process, each on a port of its own (0: the
	// kernel picks it, and every generation inherits the socket): HTTP/1.1
	// and h2c, HTTPS (HTTP/1.1 and HTTP/2), gRPC.
	cmd := exec.Command(d.bin, "-addr", "127.0.0.1:0", "-h2c",
		"-tls-addr", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile,
		"-grpc", "127.0.0.1:0",
		"-pidfile", d.pidFile, "-log-json", "-probation", "300ms", "-drain-timeout", "10s")
	if d.adminAddr != "" {
		// Read-only: no -admin-token.
		cmd.Args = append(cmd.Args, "-admin-addr", d.adminAddr)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stderr = w
	cmd.Stdout = os.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	w.Close()
	d.logs = &logs{}
	d.logs.cond = sync.NewCond(&d.logs.mu)
	go d.logs.read(r)
	go func() { _ = cmd.Wait() }()
	return nil
}

// killOnInterrupt kills every process running bin, and exits, on an
// interrupt.
func killOnInterrupt(bin string) {
	sigs := make(chan os.Signal, 1)
	ossignal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		killAll(bin)
		os.Exit(130)
	}()
}

// serving waits for the server to serve and returns its addresses.
func (d *demo) serving() (httpAddr, tlsAddr, grpcAddr string, err error) {
	serving, err := d.logs.wait(0, 30*time.Second, func(e event) bool { return e.Msg == msgServing })
	if err != nil {
		return "", "", "", err
	}
	// handoff.Run logs the addresses of its servers in their order:
	// examples/httpserver's -addr, then -tls-addr, then -grpc, then
	// -admin-addr.
	want := 3
	if d.adminAddr != "" {
		want = 4
	}
	if len(serving.Addrs) != want {
		return "", "", "", fmt.Errorf("the server serves on %v: want %d addresses (HTTP, HTTPS, gRPC, admin)", serving.Addrs, want)
	}
	httpAddr, tlsAddr, grpcAddr = serving.Addrs[0], serving.Addrs[1], serving.Addrs[2]
	fmt.Printf("server pid %d serving HTTP/1.1 and h2c on %s, HTTPS (HTTP/1.1, HTTP/2) on %s, gRPC on %s\n",
		serving.PID, httpAddr, tlsAddr, grpcAddr)
	if want == 4 {
		fmt.Printf("admin page (live, read-only): http://%s/\n", serving.Addrs[3])
	}
	return httpAddr, tlsAddr, grpcAddr, nil
}

// demoLoad is the load on the server's three addresses; printLoad
// describes it.
func demoLoad(httpAddr, tlsAddr, grpcAddr string, pool *x509.CertPool) upgradertest.Config {
	return upgradertest.Config{
		Addr:    httpAddr,
		TLSAddr: tlsAddr,
		TLS:     &tls.Config{RootCAs: pool},
		Workers: map[upgradertest.Kind]int{
			upgradertest.KeepAliveChecked: 6,
			upgradertest.KeepAliveBlind:   6,
			upgradertest.NewConn:          6,
			upgradertest.Slow:             6,
			upgradertest.Stream:           2,
			upgradertest.H2TLS:            1,
			upgradertest.H2C:              1,
			upgradertest.H2Idle:           4,
			upgradertest.GRPCUnary:        2,
			upgradertest.GRPCStream:       1,
		},
		Pause:      5 * time.Millisecond,
		StreamTime: 3 * time.Second,
		H2Streams:  4,
		H2Slow:     1,
		H2Stream:   1,
		Clients:    grpcload.Clients(grpcAddr, nil),
	}
}

func printLoad() {
	fmt.Printf("load, from clients that never retry:\n")
	fmt.Printf("  HTTP/1.1  24 clients: keep-alive checked, keep-alive blind, new connection, 200 ms requests; 2 of 3 s streams\n")
	fmt.Printf("  HTTP/2    2 clients of 4 concurrent streams (TLS, h2c), 1 stream of 200 ms requests and 1 of 3 s streams in each;\n")
	fmt.Printf("            4 h2c clients idle between bursts\n")
	fmt.Printf("  gRPC      2 unary clients, 1 of 3 s streams\n\n")
}

// plan is the binaries to upgrade to, in order: upgrades times the good
// one, with the broken one in the middle.
func plan(upgrades int, good, broken string) []string {
	p := make([]string, 0, upgrades+1)
	for i := range upgrades {
		p = append(p, good)
		if i == upgrades/2 {
			p = append(p, broken)
		}
	}
	return p
}

// upgradeResult is what the demo saw of one upgrade.
type upgradeResult struct {
	at          time.Time
	old, new    int
	toServing   time.Duration
	toOldExited time.Duration
	rolledBack  bool
	reason      string
}

// upgrade installs src and upgrades the server to it (upgrade n, for the
// messages): it returns once the upgrade is rolled back, or committed and
// the old generation has exited.
func (d *demo) upgrade(n int, src string) (upgradeResult, error) {
	if err := d.install(src); err != nil {
		return upgradeResult{}, err
	}
	old, err := readPID(d.pidFile)
	if err != nil {
		return upgradeResult{}, err
	}
	from := d.logs.mark()
	start := time.Now()
	if err := syscall.Kill(old, syscall.SIGHUP); err != nil {
		return upgradeResult{}, err
	}
	e, err := d.logs.wait(from, 60*time.Second, func(e event) bool {
		return e.PID == old && (e.Event == "committed" && e.TargetPID != old || e.Msg == msgUpgradeFailed)
	})
	if err != nil {
		return upgradeResult{}, fmt.Errorf("upgrade %d: %w", n, err)
	}
	u := upgradeResult{at: start, old: old}
	if e.Msg == msgUpgradeFailed {
		u.rolledBack, u.reason = true, e.Error
		fmt.Printf("upgrade %d: broken binary rolled back after %v, pid %d keeps serving:\n           %s\n",
			n, e.at.Sub(start).Round(time.Millisecond), old, e.Error)
		return u, nil
	}
	u.new = e.TargetPID
	if acc, err := d.logs.wait(from, time.Second, func(e event) bool { return e.PID == old && e.Event == "accepting" }); err == nil {
		u.toServing = acc.at.Sub(start)
	}
	if _, err := d.logs.wait(from, 60*time.Second, func(e event) bool { return e.PID == u.new && e.Event == "parent-exited" }); err != nil {
		return upgradeResult{}, fmt.Errorf("upgrade %d: old generation did not exit: %w", n, err)
	}
	u.toOldExited = time.Since(start)
	fmt.Printf("upgrade %d: pid %d -> %d, new generation serving after %v, old one drained and exited after %v\n",
		n, old, u.new, u.toServing.Round(time.Millisecond), u.toOldExited.Round(time.Millisecond))
	return u, nil
}

// stop stops the generation in charge with SIGTERM and waits for it to
// say it exits.
func (d *demo) stop() error {
	last, _ := readPID(d.pidFile)
	from := d.logs.mark()
	_ = syscall.Kill(last, syscall.SIGTERM)
	if _, err := d.logs.wait(from, 30*time.Second, func(e event) bool { return e.PID == last && e.Msg == msgExiting }); err != nil {
		return fmt.Errorf("final stop: %w", err)
	}
	return nil
}

// printReport prints what the load saw through the upgrades done.
func printReport(res *upgradertest.Result, done []upgradeResult) {
	ok, rolled := 0, 0
	for _, u := range done {
		if u.rolledBack {
			rolled++
		} else {
			ok++
		}
	}
	nearUpgrade := func(s upgradertest.Sample) bool {
		for _, u := range done {
			if d := s.Start.Sub(u.at); d >= 0 && d < time.Second {
				return true
			}
		}
		return false
	}
	// Fast requests: GET /pid and the unary RPC, answered (Percentile
	// leaves the streams out; slow requests have their own length).
	fast := func(s upgradertest.Sample) bool { return s.Op == upgradertest.OpPID && s.Class == upgradertest.OK }
	steady := func(s upgradertest.Sample) bool { return fast(s) && !nearUpgrade(s) }
	near := func(s upgradertest.Sample) bool { return fast(s) && nearUpgrade(s) }
	count := func(keep func(upgradertest.Sample) bool) int {
		n := 0
		for _, s := range res.Samples {
			if keep(s) {
				n++
			}
		}
		return n
	}
	isKind := func(ks ...upgradertest.Kind) func(upgradertest.Sample) bool {
		return func(s upgradertest.Sample) bool { return slices.Contains(ks, s.Kind) }
	}
	fmt.Printf("\n--- report ---\n")
	fmt.Printf("upgrades:         %d committed, %d rolled back\n", ok, rolled)
	fmt.Printf("requests:         %d: HTTP/1.1 %d, HTTP/2 %d, gRPC %d (streams %d)\n", res.Count(-1),
		count(isKind(upgradertest.KeepAliveChecked, upgradertest.KeepAliveBlind, upgradertest.NewConn, upgradertest.Slow, upgradertest.Stream)),
		count(isKind(upgradertest.H2TLS, upgradertest.H2C, upgradertest.H2Idle)),
		count(isKind(upgradertest.GRPCUnary, upgradertest.GRPCStream)),
		count(func(s upgradertest.Sample) bool { return s.Op == upgradertest.OpStream }))
	fmt.Printf("failed requests:  %d %v\n", res.Failed(), res.Failures())
	fmt.Printf("HTTP/2:           %d connections: %d got a GOAWAY, %d closed without one\n", res.H2.Opened, res.H2.GoAway, res.H2.NoGoAway)
	fmt.Printf("                  %d streams refused unprocessed after a GOAWAY (safe to retry, not failures)\n", res.Unprocessed())
	fmt.Printf("latency (fast requests) p50 / p99 / max:\n")
	fmt.Printf("  steady state:            %8v %8v %8v\n", res.Percentile(50, steady).Round(time.Microsecond), res.Percentile(99, steady).Round(time.Microsecond), res.Percentile(100, steady).Round(time.Microsecond))
	fmt.Printf("  within 1 s of upgrades:  %8v %8v %8v\n", res.Percentile(50, near).Round(time.Microsecond), res.Percentile(99, near).Round(time.Microsecond), res.Percentile(100, near).Round(time.Microsecond))
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// processesOf lists the live processes running the binary at path.
func processesOf(path string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.TrimSuffix(exe, " (deleted)") == path {
			if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && strings.Contains(string(st), ") Z ") {
				continue // exited, waiting to be reaped by its parent
			}
			pids = append(pids, pid)
		}
	}
	return pids
}

func killAll(path string) {
	for _, pid := range processesOf(path) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
