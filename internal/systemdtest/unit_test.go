//go:build linux

package systemdtest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/handoff-go/handoff/internal/servertest"
	"github.com/handoff-go/handoff/internal/systemdtest"
	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// The integration test of issue 4 (c): the example server as a Type=notify
// unit of a real systemd 252, using the units shipped in examples/systemd.
//
// Test code imports upgradertest (a public package) for its load generator
// and internal/servertest for the builds of the server; the package itself
// imports the standard library only.

func TestMain(m *testing.M) {
	code := m.Run()
	if builds != nil {
		builds.Remove()
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
	builds    *servertest.Builds
)

// binaries builds the example server, good and deliberately unhealthy, once,
// when the first test that booted a sandbox needs it (a machine that cannot
// boot one does not pay for the build).
func binaries(t *testing.T) (good, broken []byte) {
	t.Helper()
	buildOnce.Do(func() {
		builds, buildErr = servertest.Build("github.com/handoff-go/handoff/examples/httpserver", false, "", "unhealthy")
	})
	require.NoError(t, buildErr)
	var err error
	good, err = os.ReadFile(builds.Path(""))
	require.NoError(t, err)
	broken, err = os.ReadFile(builds.Path("unhealthy"))
	require.NoError(t, err)
	return good, broken
}

// unitFile reads a shipped unit and points it at addr, with shorter
// timeouts for the test.
func unitFile(t *testing.T, name, addr string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "systemd", name))
	require.NoError(t, err)
	s := strings.ReplaceAll(string(b), "127.0.0.1:8080", addr)
	s = strings.ReplaceAll(s, "-drain-timeout 30s", "-drain-timeout 15s")
	s = strings.ReplaceAll(s, "-upgrade-timeout 60s", "-upgrade-timeout 20s")
	// This test's own clients can be descheduled for longer than the
	// default idle grace (300 ms) on a loaded machine, more so under the
	// race detector, and would then reuse a connection the draining
	// generation closed as idle: a client-side artefact, not a lost
	// request (see upgrader's tests, which do the same).
	s = strings.ReplaceAll(s, "-drain-timeout 15s", "-drain-timeout 15s -idle-grace 1s")
	// JSON records in the journal, read with servertest.Record.
	s = strings.ReplaceAll(s, "-upgrade-timeout 20s", "-upgrade-timeout 20s -log-json")
	return []byte(s)
}

// freeAddr returns a loopback address whose port was free a moment ago.
// The sandbox shares the host's network.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
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
	_, err := u.sb.Systemctl(ctx, args...)
	require.NoError(u.t, err, "journal:\n%s", u.journal())
}

func (u *unit) show() map[string]string {
	u.t.Helper()
	ctx, cancel := u.ctx()
	defer cancel()
	m, err := u.sb.Show(ctx, u.name, "MainPID", "ActiveState", "SubState", "Result", "StatusText", "ExecMainStatus", "NRestarts")
	require.NoError(u.t, err)
	return m
}

func (u *unit) journal() string {
	ctx, cancel := u.ctx()
	defer cancel()
	return u.sb.Journal(ctx, u.name)
}

// journalHas waits, bounded, until the unit's journal holds s, and returns
// the journal. journald writes a service's output a moment after the
// service wrote it, and offers no event for it here, so it polls.
func (u *unit) journalHas(s string) string {
	deadline := time.Now().Add(15 * time.Second)
	for {
		j := u.journal()
		if strings.Contains(j, s) || time.Now().After(deadline) {
			return j
		}
		time.Sleep(100 * time.Millisecond)
	}
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
		require.False(u.t, time.Now().After(deadline), "%s: not within 60s; last state %v\njournal:\n%s", what, m, u.journal())
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

// records returns the unit's log records (the server logs JSON, see
// unitFile), from the journal.
func (u *unit) records() []servertest.Record {
	u.t.Helper()
	ctx, cancel := u.ctx()
	defer cancel()
	out, err := u.sb.Run(ctx, "journalctl", "--no-pager", "-o", "cat", "-u", u.name)
	require.NoError(u.t, err)
	var rs []servertest.Record
	for _, line := range strings.Split(string(out), "\n") {
		var r servertest.Record
		if json.Unmarshal([]byte(line), &r) != nil {
			continue // systemd's own lines
		}
		r.Raw = line
		rs = append(rs, r)
	}
	return rs
}

// waitRecord polls the journal, bounded, until a record matches (there is
// no event for a journal entry here), and returns it.
func (u *unit) waitRecord(what string, match func(servertest.Record) bool) servertest.Record {
	u.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, r := range u.records() {
			if match(r) {
				return r
			}
		}
		require.False(u.t, time.Now().After(deadline), "%s: no such record within 60s; journal:\n%s", what, u.journal())
		time.Sleep(50 * time.Millisecond)
	}
}

// get fetches path from the service and returns the body, trimmed.
func get(t *testing.T, addr, path string) string {
	t.Helper()
	return strings.TrimSpace(servertest.Get(t, "tcp", addr, path))
}

// load is the acceptance mix with 1 s streams, each client pausing 5 ms
// between two requests.
func load(addr string) upgradertest.Config {
	cfg := upgradertest.MixedConfig(addr)
	cfg.Pause, cfg.StreamTime = 5*time.Millisecond, time.Second
	return cfg
}

// checkLoad checks that the load of cfg lost no request and made requests
// of every kind, and logs what it did.
func checkLoad(t *testing.T, what string, r *upgradertest.Result, cfg upgradertest.Config) {
	t.Helper()
	t.Logf("%s: %s", what, r.Summary())
	t.Logf("%s: requests answered per pid: %v", what, r.PIDs())
	assert.NoError(t, r.Check(cfg), what)
}

// reloads runs n reloads and returns the MainPID after each; each must
// change the main pid while the unit stays up.
func (u *unit) reloads(n int, good []byte) []string {
	u.t.Helper()
	pids := []string{u.show()["MainPID"]}
	for i := range n {
		old := pids[len(pids)-1]
		require.NoError(u.t, u.sb.WriteFile("/usr/local/bin/httpserver", good, 0o755))
		u.systemctl("reload", u.name)
		m := u.wait(fmt.Sprintf("reload %d: MainPID moves on from %s", i+1, old), func(m map[string]string) bool {
			return m["MainPID"] != old && m["MainPID"] != "0" && m["ActiveState"] == "active" && m["SubState"] == "running"
		})
		pids = append(pids, m["MainPID"])
	}
	return pids
}

// inFlight starts requests that are in flight when it returns: streams of
// secs seconds whose first line arrived. Their results come on the channel,
// one per request, "" for a complete one.
func inFlight(t *testing.T, addr string, n, secs int) <-chan string {
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
			fmt.Fprintf(c, "GET /stream?s=%d HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", secs)
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
	res := inFlight(u.t, addr, n, 3)
	pid := u.show()["MainPID"]
	u.systemctl("stop", u.name)
	for range n {
		assert.Empty(u.t, <-res, "request in flight at stop")
	}
	m := u.show()
	u.t.Logf("after systemctl stop (MainPID was %s): ActiveState=%s SubState=%s Result=%s ExecMainStatus=%s",
		pid, m["ActiveState"], m["SubState"], m["Result"], m["ExecMainStatus"])
	j := u.journal()
	assert.Equal(u.t, "inactive", m["ActiveState"], "after stop; journal:\n%s", j)
	assert.Equal(u.t, "success", m["Result"], "after stop; journal:\n%s", j)
	u.journalClean(j)
}

// journalClean checks that systemd did not have to SIGKILL anything and
// never refused the process that spoke to it.
func (u *unit) journalClean(j string) {
	u.t.Helper()
	for _, bad := range []string{"SIGKILL", "not our child", "reception only permitted", "Watchdog timeout"} {
		assert.NotContains(u.t, j, bad, "the journal:\n%s", j)
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
	u.startNotify(good, addr)

	cfg := load(addr)
	stopLoad := upgradertest.Start(t.Context(), cfg)
	stopWatch := u.watchStates()
	pids := u.reloads(10, good)
	bad := stopWatch()
	r := stopLoad()
	t.Logf("MainPID after start and each of 10 reloads: %s", strings.Join(pids, " "))
	checkLoad(t, "10 reloads", r, cfg)
	assert.Empty(t, bad, "the unit was not active throughout")
	answered := r.PIDs()
	for _, p := range pids[1:] {
		assert.NotZero(t, answered[p], "generation with pid %s answered no request", p)
	}
	assert.Equal(t, pids[len(pids)-1], get(t, addr, "/pid"), "/pid answered by MainPID")

	// A broken binary: its health check fails; the unit stays on the old pid.
	last := pids[len(pids)-1]
	require.NoError(t, sb.WriteFile("/usr/local/bin/httpserver", broken, 0o755))
	stopLoad = upgradertest.Start(t.Context(), cfg)
	u.systemctl("reload", u.name)
	m := u.wait("rollback of the broken binary", func(m map[string]string) bool {
		return strings.Contains(m["StatusText"], "failed") && m["SubState"] == "running"
	})
	r = stopLoad()
	t.Logf("after the broken reload: MainPID=%s ActiveState=%s SubState=%s StatusText=%q", m["MainPID"], m["ActiveState"], m["SubState"], m["StatusText"])
	checkLoad(t, "broken reload", r, cfg)
	assert.Equal(t, last, m["MainPID"], "MainPID after the broken reload")
	assert.Equal(t, "active", m["ActiveState"], "after the broken reload")
	assert.Equal(t, last, get(t, addr, "/pid"), "/pid after the broken reload")
	require.NoError(t, sb.WriteFile("/usr/local/bin/httpserver", good, 0o755))

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
	require.NoError(t, sb.WriteFile("/usr/local/bin/httpserver", good, 0o755))
	for _, name := range []string{"httpserver.service", "httpserver.socket"} {
		require.NoError(t, sb.WriteFile("/etc/systemd/system/"+name, unitFile(t, name, addr), 0o644))
	}
	u.systemctl("daemon-reload")
	u.systemctl("start", "httpserver.socket")
	// The first request starts the service.
	first := get(t, addr, "/pid")
	m := u.wait("service started by the socket", func(m map[string]string) bool {
		return m["ActiveState"] == "active" && m["SubState"] == "running"
	})
	t.Logf("after the first request: MainPID=%s (answered by %s) StatusText=%q", m["MainPID"], first, m["StatusText"])
	assert.Equal(t, m["MainPID"], first, "the first request was answered by")
	assert.Contains(t, u.journalHas("adopted activated socket"), "adopted activated socket", "the server adopts the activated socket")

	cfg := load(addr)
	stopLoad := upgradertest.Start(t.Context(), cfg)
	stopWatch := u.watchStates()
	pids := u.reloads(3, good)
	bad := stopWatch()
	r := stopLoad()
	t.Logf("MainPID after start and each of 3 reloads: %s", strings.Join(pids, " "))
	checkLoad(t, "3 reloads on the activated socket", r, cfg)
	assert.Empty(t, bad, "the unit was not active throughout")
	j := u.journal()
	assert.Equal(t, 1, strings.Count(j, "adopted activated socket"), "adoptions (later generations inherit):\n%s", j)

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

// startNotify installs the good binary and httpserver.service serving on
// addr, starts it, and returns its properties once it serves.
func (u *unit) startNotify(good []byte, addr string) map[string]string {
	u.t.Helper()
	require.NoError(u.t, u.sb.WriteFile("/usr/local/bin/httpserver", good, 0o755))
	require.NoError(u.t, u.sb.WriteFile("/etc/systemd/system/httpserver.service", unitFile(u.t, "httpserver.service", addr), 0o644))
	u.systemctl("daemon-reload")
	u.systemctl("start", u.name)
	m := u.show()
	u.t.Logf("after start: MainPID=%s ActiveState=%s SubState=%s StatusText=%q", m["MainPID"], m["ActiveState"], m["SubState"], m["StatusText"])
	require.Equal(u.t, "active", m["ActiveState"], "after start; journal:\n%s", u.journal())
	require.Equal(u.t, "running", m["SubState"], "after start; journal:\n%s", u.journal())
	require.Equal(u.t, m["MainPID"], get(u.t, addr, "/pid"), "after start, /pid is answered by")
	return m
}

// TestKillNewGenerationWhileDraining: under systemd, the new generation
// killed (kill -9) after the commit, while the old one still drains a long
// stream. The old generation never stopped being the unit's main process
// (the PID file names the successor only from the end of the drain): it
// takes charge again and answers within a second, the unit stays active on
// its MainPID, the stream completes, and systemctl stop ends the unit
// cleanly.
func TestKillNewGenerationWhileDraining(t *testing.T) {
	sb := boot(t, 3*time.Minute)
	good, _ := binaries(t)
	addr := freeAddr(t)
	u := &unit{t: t, sb: sb, name: "httpserver.service"}
	p1 := u.startNotify(good, addr)["MainPID"]

	stream := inFlight(t, addr, 1, 8)
	u.systemctl("reload", u.name)
	r := u.waitRecord("the commit", func(r servertest.Record) bool {
		return strconv.Itoa(r.PID) == p1 && r.Event == "committed" && strconv.Itoa(r.TargetPID) != p1
	})
	p2 := strconv.Itoa(r.TargetPID)
	m := u.show()
	t.Logf("after the commit to pid %s: MainPID=%s StatusText=%q", p2, m["MainPID"], m["StatusText"])
	assert.Equal(t, p1, m["MainPID"], "MainPID while the old generation drains")
	require.Equal(t, p2, get(t, addr, "/pid"), "the new generation serves")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_, err := sb.Run(ctx, "kill", "-9", p2)
	cancel()
	require.NoError(t, err)
	killed := time.Now()
	answered := ""
	for time.Since(killed) < 10*time.Second { // bounded
		body, err := servertest.TryGet("tcp", addr, "/pid", 200*time.Millisecond)
		if err == nil {
			answered = strings.TrimSpace(body)
			break
		}
	}
	took := time.Since(killed)
	t.Logf("after the kill of pid %s: answered by %q after %s", p2, answered, took)
	assert.Equal(t, p1, answered, "the old generation answers again")
	assert.Less(t, took, time.Second, "the service answered again after %s", took)

	rc := u.waitRecord("the reclaim", func(r servertest.Record) bool { return strconv.Itoa(r.PID) == p1 && r.Event == "reclaimed" })
	assert.Contains(t, rc.Error, "died")
	m = u.wait("the unit back on the old generation", func(m map[string]string) bool {
		return strings.Contains(m["StatusText"], "successor died")
	})
	t.Logf("after the reclaim: MainPID=%s ActiveState=%s SubState=%s StatusText=%q NRestarts=%s", m["MainPID"], m["ActiveState"], m["SubState"], m["StatusText"], m["NRestarts"])
	assert.Equal(t, p1, m["MainPID"], "MainPID after the kill")
	assert.Equal(t, "active", m["ActiveState"], "after the kill")
	assert.Equal(t, "running", m["SubState"], "after the kill")
	assert.Equal(t, "0", m["NRestarts"], "systemd restarted the service")
	pidFile, err := os.ReadFile(sb.Path("/run/httpserver/httpserver.pid"))
	require.NoError(t, err)
	assert.Equal(t, p1, strings.TrimSpace(string(pidFile)), "the PID file after the kill")
	assert.Empty(t, <-stream, "the stream on the old generation")

	u.stopInFlight(addr)
}
