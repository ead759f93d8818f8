//go:build linux

package systemdtest_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/handoff-go/handoff/internal/systemdtest"
	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// The integration test of issue 4 (c): the example server as a Type=notify
// unit of a real systemd 252, using the units shipped in examples/systemd.
//
// Test code only imports upgradertest (a public package) for its load
// generator; the package itself imports the standard library only.

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  error
	binDir    string
)

// binaries builds the example server, good and deliberately unhealthy, once.
func binaries(t *testing.T) (good, broken []byte) {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "handoff-systemdtest-bin-"); buildErr != nil {
			return
		}
		for _, v := range []string{"good", "unhealthy"} {
			args := []string{"build", "-o", filepath.Join(binDir, v)}
			if v != "good" {
				args = append(args, "-ldflags", "-X main.breakMode="+v)
			}
			args = append(args, "github.com/handoff-go/handoff/examples/httpserver")
			if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	var err error
	if good, err = os.ReadFile(filepath.Join(binDir, "good")); err != nil {
		t.Fatal(err)
	}
	if broken, err = os.ReadFile(filepath.Join(binDir, "unhealthy")); err != nil {
		t.Fatal(err)
	}
	return good, broken
}

// unitFile reads a shipped unit and points it at addr, with shorter
// timeouts for the test.
func unitFile(t *testing.T, name, addr string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "systemd", name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "127.0.0.1:8080", addr)
	s = strings.ReplaceAll(s, "-drain-timeout 30s", "-drain-timeout 15s")
	s = strings.ReplaceAll(s, "-upgrade-timeout 60s", "-upgrade-timeout 20s")
	// This test's own clients can be descheduled for longer than the
	// default idle grace (300 ms) on a loaded machine, more so under the
	// race detector, and would then reuse a connection the draining
	// generation closed as idle: a client-side artefact, not a lost
	// request (see upgrader's tests, which do the same).
	s = strings.ReplaceAll(s, "-drain-timeout 15s", "-drain-timeout 15s -idle-grace 1s")
	return []byte(s)
}

// freeAddr returns a loopback address whose port was free a moment ago.
// The sandbox shares the host's network.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// unit drives one unit in a sandbox.
type unit struct {
	t    *testing.T
	sb   *systemdtest.Sandbox
	name string
}

func (u *unit) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 60*time.Second)
}

func (u *unit) systemctl(args ...string) {
	u.t.Helper()
	ctx, cancel := u.ctx()
	defer cancel()
	if _, err := u.sb.Systemctl(ctx, args...); err != nil {
		u.t.Fatalf("%v\njournal:\n%s", err, u.journal())
	}
}

func (u *unit) show() map[string]string {
	u.t.Helper()
	ctx, cancel := u.ctx()
	defer cancel()
	m, err := u.sb.Show(ctx, u.name, "MainPID", "ActiveState", "SubState", "Result", "StatusText", "ExecMainStatus", "NRestarts")
	if err != nil {
		u.t.Fatal(err)
	}
	return m
}

func (u *unit) journal() string {
	ctx, cancel := u.ctx()
	defer cancel()
	return u.sb.Journal(ctx, u.name)
}

// wait polls the unit's properties until done accepts them (systemctl
// reload returns before the upgrade is over, and systemd offers no event to
// wait for here), bounded.
func (u *unit) wait(what string, done func(map[string]string) bool) map[string]string {
	u.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		m := u.show()
		if done(m) {
			return m
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("%s: not within 60s; last state %v\njournal:\n%s", what, m, u.journal())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// watchStates records every ActiveState the unit shows until stop is
// called, and returns those other than active and reloading.
func (u *unit) watchStates() (stop func() []string) {
	done := make(chan struct{})
	res := make(chan []string, 1)
	go func() {
		var bad []string
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			ctx, cancel := u.ctx()
			m, err := u.sb.Show(ctx, u.name, "ActiveState", "SubState", "MainPID")
			cancel()
			if err != nil {
				bad = append(bad, err.Error())
			} else if m["ActiveState"] != "active" && m["ActiveState"] != "reloading" {
				bad = append(bad, fmt.Sprintf("%s/%s pid %s", m["ActiveState"], m["SubState"], m["MainPID"]))
			}
			select {
			case <-done:
				res <- bad
				return
			case <-tick.C:
			}
		}
	}()
	return func() []string { close(done); return <-res }
}

func get(t *testing.T, addr, path string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", path)
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_, body, ok := strings.Cut(string(b), "\r\n\r\n")
	if !ok || !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		t.Fatalf("GET %s: %q", path, b)
	}
	return strings.TrimSpace(body)
}

func load(addr string) upgradertest.Config {
	return upgradertest.Config{
		Addr: addr,
		Workers: map[upgradertest.Kind]int{
			upgradertest.KeepAliveChecked: 4,
			upgradertest.KeepAliveBlind:   4,
			upgradertest.NewConn:          4,
			upgradertest.Slow:             2,
			upgradertest.Stream:           2,
		},
		Pause:      5 * time.Millisecond,
		StreamTime: time.Second,
	}
}

func startLoad(cfg upgradertest.Config) (stop func() *upgradertest.Result) {
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan *upgradertest.Result, 1)
	go func() { res <- upgradertest.Run(ctx, cfg) }()
	return func() *upgradertest.Result { cancel(); return <-res }
}

func checkLoad(t *testing.T, what string, r *upgradertest.Result) {
	t.Helper()
	t.Logf("%s: %d requests (keepalive-checked %d, keepalive-blind %d, new-conn %d, slow %d, streams %d), failed %d, answered by %d pids",
		what, r.Count(-1), r.Count(upgradertest.KeepAliveChecked), r.Count(upgradertest.KeepAliveBlind), r.Count(upgradertest.NewConn),
		r.Count(upgradertest.Slow), r.Count(upgradertest.Stream), r.Failed(), len(r.PIDs()))
	t.Logf("%s: requests answered per pid: %v", what, r.PIDs())
	if r.Failed() != 0 {
		t.Errorf("%s: %d failed requests %v\n%s", what, r.Failed(), r.Failures(), r.FirstFailures(20))
	}
}

// reloads runs n reloads and returns the MainPID after each; each must
// change the main pid while the unit stays up.
func (u *unit) reloads(n int, good []byte) []string {
	u.t.Helper()
	pids := []string{u.show()["MainPID"]}
	for i := range n {
		old := pids[len(pids)-1]
		if err := u.sb.WriteFile("/usr/local/bin/httpserver", good, 0o755); err != nil {
			u.t.Fatal(err)
		}
		u.systemctl("reload", u.name)
		m := u.wait(fmt.Sprintf("reload %d: MainPID moves on from %s", i+1, old), func(m map[string]string) bool {
			return m["MainPID"] != old && m["MainPID"] != "0" && m["ActiveState"] == "active" && m["SubState"] == "running"
		})
		pids = append(pids, m["MainPID"])
	}
	return pids
}

// inFlight starts requests that are in flight when it returns: streams
// whose first line arrived. Their results come on the channel, one per
// request, "" for a complete one.
func inFlight(t *testing.T, addr string, n int) <-chan string {
	t.Helper()
	res := make(chan string, n)
	var started sync.WaitGroup
	for range n {
		started.Add(1)
		go func() {
			var once sync.Once
			begun := func() { once.Do(started.Done) }
			defer begun()
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				res <- err.Error()
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			fmt.Fprintf(c, "GET /stream?s=3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
			br := bufio.NewReader(c)
			var all strings.Builder
			for {
				line, err := br.ReadString('\n')
				all.WriteString(line)
				if strings.HasPrefix(line, "line 0 ") {
					begun()
				}
				if err != nil {
					break
				}
			}
			// Chunked: the last chunk is "done\n", then the empty one.
			if !strings.Contains(all.String(), "\r\ndone\n\r\n0\r\n\r\n") {
				res <- fmt.Sprintf("stream not complete: %q", all.String())
				return
			}
			res <- ""
		}()
	}
	started.Wait()
	return res
}

// stopInFlight stops the unit with requests in flight: every one must be
// answered in full, the stop must end with Result=success, and systemd must
// not have had to SIGKILL anything.
func (u *unit) stopInFlight(addr string) {
	u.t.Helper()
	const n = 6
	res := inFlight(u.t, addr, n)
	pid := u.show()["MainPID"]
	u.systemctl("stop", u.name)
	for range n {
		if r := <-res; r != "" {
			u.t.Errorf("request in flight at stop: %s", r)
		}
	}
	m := u.show()
	u.t.Logf("after systemctl stop (MainPID was %s): ActiveState=%s SubState=%s Result=%s ExecMainStatus=%s",
		pid, m["ActiveState"], m["SubState"], m["Result"], m["ExecMainStatus"])
	j := u.journal()
	if m["ActiveState"] != "inactive" || m["Result"] != "success" {
		u.t.Errorf("after stop: %v, want inactive and Result=success\njournal:\n%s", m, j)
	}
	for _, bad := range []string{"SIGKILL", "not our child", "reception only permitted", "Watchdog timeout"} {
		if strings.Contains(j, bad) {
			u.t.Errorf("the journal says %q:\n%s", bad, j)
		}
	}
}

// TestNotifyUnit: start; 10 reloads under load with no failed request, the
// MainPID following each generation and the unit up throughout; a reload
// to a broken binary that leaves the old pid in charge; a stop with
// requests in flight that answers them all and ends Result=success.
func TestNotifyUnit(t *testing.T) {
	sb := boot(t, 3*time.Minute)
	good, broken := binaries(t)
	addr := freeAddr(t)
	u := &unit{t: t, sb: sb, name: "httpserver.service"}
	if err := sb.WriteFile("/usr/local/bin/httpserver", good, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := sb.WriteFile("/etc/systemd/system/httpserver.service", unitFile(t, "httpserver.service", addr), 0o644); err != nil {
		t.Fatal(err)
	}
	u.systemctl("daemon-reload")
	u.systemctl("start", u.name)
	m := u.show()
	t.Logf("after start: MainPID=%s ActiveState=%s SubState=%s StatusText=%q", m["MainPID"], m["ActiveState"], m["SubState"], m["StatusText"])
	if m["ActiveState"] != "active" || m["SubState"] != "running" || get(t, addr, "/pid") != m["MainPID"] {
		t.Fatalf("after start: %v\n%s", m, u.journal())
	}

	cfg := load(addr)
	stopLoad := startLoad(cfg)
	stopWatch := u.watchStates()
	pids := u.reloads(10, good)
	bad := stopWatch()
	r := stopLoad()
	t.Logf("MainPID after start and each of 10 reloads: %s", strings.Join(pids, " "))
	checkLoad(t, "10 reloads", r)
	if len(bad) != 0 {
		t.Errorf("the unit was not active throughout: %v", bad)
	}
	answered := r.PIDs()
	for _, p := range pids[1:] {
		if answered[p] == 0 {
			t.Errorf("generation with pid %s answered no request", p)
		}
	}
	if got := get(t, addr, "/pid"); got != pids[len(pids)-1] {
		t.Errorf("/pid = %s, MainPID = %s", got, pids[len(pids)-1])
	}

	// A broken binary: its health check fails; the unit stays on the old pid.
	last := pids[len(pids)-1]
	if err := sb.WriteFile("/usr/local/bin/httpserver", broken, 0o755); err != nil {
		t.Fatal(err)
	}
	stopLoad = startLoad(cfg)
	u.systemctl("reload", u.name)
	m = u.wait("rollback of the broken binary", func(m map[string]string) bool {
		return strings.Contains(m["StatusText"], "failed") && m["SubState"] == "running"
	})
	r = stopLoad()
	t.Logf("after the broken reload: MainPID=%s ActiveState=%s SubState=%s StatusText=%q", m["MainPID"], m["ActiveState"], m["SubState"], m["StatusText"])
	checkLoad(t, "broken reload", r)
	if m["MainPID"] != last || m["ActiveState"] != "active" || get(t, addr, "/pid") != last {
		t.Errorf("after the broken reload: %v, want MainPID %s active and serving", m, last)
	}
	if err := sb.WriteFile("/usr/local/bin/httpserver", good, 0o755); err != nil {
		t.Fatal(err)
	}

	u.stopInFlight(addr)
}

// TestSocketUnit: the same service started through httpserver.socket: the
// first generation adopts the socket, reloads hand it on without a failed
// request, a stop is graceful, and the socket then starts the service
// again.
func TestSocketUnit(t *testing.T) {
	sb := boot(t, 3*time.Minute)
	good, _ := binaries(t)
	addr := freeAddr(t)
	u := &unit{t: t, sb: sb, name: "httpserver.service"}
	if err := sb.WriteFile("/usr/local/bin/httpserver", good, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"httpserver.service", "httpserver.socket"} {
		if err := sb.WriteFile("/etc/systemd/system/"+name, unitFile(t, name, addr), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u.systemctl("daemon-reload")
	u.systemctl("start", "httpserver.socket")
	// The first request starts the service.
	first := get(t, addr, "/pid")
	m := u.wait("service started by the socket", func(m map[string]string) bool {
		return m["ActiveState"] == "active" && m["SubState"] == "running"
	})
	t.Logf("after the first request: MainPID=%s (answered by %s) StatusText=%q", m["MainPID"], first, m["StatusText"])
	if first != m["MainPID"] {
		t.Errorf("first request answered by %s, MainPID %s", first, m["MainPID"])
	}
	if j := u.journal(); !strings.Contains(j, "adopted activated socket") {
		t.Errorf("the server did not adopt the activated socket:\n%s", j)
	}

	cfg := load(addr)
	stopLoad := startLoad(cfg)
	stopWatch := u.watchStates()
	pids := u.reloads(3, good)
	bad := stopWatch()
	r := stopLoad()
	t.Logf("MainPID after start and each of 3 reloads: %s", strings.Join(pids, " "))
	checkLoad(t, "3 reloads on the activated socket", r)
	if len(bad) != 0 {
		t.Errorf("the unit was not active throughout: %v", bad)
	}
	if j := u.journal(); strings.Count(j, "adopted activated socket") != 1 {
		t.Errorf("want exactly one adoption (later generations inherit):\n%s", j)
	}

	u.stopInFlight(addr)

	// The socket unit still holds the socket: the next request starts the
	// service again.
	again := get(t, addr, "/pid")
	m = u.wait("service started again by the socket", func(m map[string]string) bool {
		return m["ActiveState"] == "active" && m["SubState"] == "running"
	})
	t.Logf("after a request to the stopped service: MainPID=%s (answered by %s)", m["MainPID"], again)
	u.systemctl("stop", "httpserver.socket", u.name)
}
