//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/handoff-go/handoff/internal/proc"
	"github.com/handoff-go/handoff/internal/servertest"
)

// The tests run the command as a user does: the binary, built in TestMain
// (with -race when the tests are), against real servers built from the
// project: examples/httpserver (handoff; and a build that hangs before it
// is ready), bench/tableflip-server (tableflip's README pattern) and
// bench/naive-server (stop and start).
var checker, httpserver, tableflip, naive *servertest.Builds

const (
	module = "github.com/handoff-go/handoff/"
	// runTimeout bounds each run of the command.
	runTimeout = 3 * time.Minute
)

func TestMain(m *testing.M) {
	code := 2
	defer func() { os.Exit(code) }()
	builds := []struct {
		b        **servertest.Builds
		pkg      string
		race     bool
		variants []string
	}{
		{&checker, module + "cmd/handoff-check", raceEnabled, []string{""}},
		{&httpserver, module + "examples/httpserver", false, []string{"", "hang"}},
		{&tableflip, module + "bench/tableflip-server", false, []string{""}},
		{&naive, module + "bench/naive-server", false, []string{""}},
	}
	for _, b := range builds {
		var err error
		if *b.b, err = servertest.Build(b.pkg, b.race, b.variants...); err != nil {
			fmt.Fprintln(os.Stderr, "building the test binaries:", err)
			return
		}
		defer (*b.b).Remove()
	}
	code = m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
}

// run is one run of the command.
type run struct {
	code           int
	stdout, stderr string
	rep            *Report
	raw            []byte // the JSON report
	dir            string // the run's directory
}

// verdict is the last line of the text report.
func (r *run) verdict() string {
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	return lines[len(lines)-1]
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

// runChecker runs the command with args in dir (a new temporary directory if
// empty), with -json and -server-log in it, bounded by runTimeout, and
// reads the JSON report back into a Report, refusing unknown fields. It
// fails the test if any process runs from dir or the build directories
// afterwards.
func runChecker(t *testing.T, dir string, args ...string) *run {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	jsonPath := filepath.Join(dir, "report.json")
	args = append([]string{"-json", jsonPath, "-server-log", filepath.Join(dir, "server.log")}, args...)
	cmd := exec.CommandContext(ctx, checker.Path(""), args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := &run{stdout: stdout.String(), stderr: stderr.String(), dir: dir}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	t.Logf("handoff-check %s\nexit %d\n%s", strings.Join(args, " "), r.code, r.stdout)
	if log, err := os.ReadFile(filepath.Join(dir, "server.log")); err == nil && t.Failed() {
		t.Logf("server log:\n%s", log)
	}
	require.NoError(t, ctx.Err(), "the command did not end within %v; stderr:\n%s", runTimeout, r.stderr)
	assert.Empty(t, runningFrom(dir, checker.Path(""), httpserver.Path(""), tableflip.Path(""), naive.Path("")), "processes left running")

	if r.code != 2 {
		r.raw, err = os.ReadFile(jsonPath)
		require.NoError(t, err, "stderr:\n%s", r.stderr)
		dec := json.NewDecoder(bytes.NewReader(r.raw))
		dec.DisallowUnknownFields()
		r.rep = new(Report)
		require.NoError(t, dec.Decode(r.rep))
		assert.Equal(t, "handoff-check: "+r.rep.Verdict, r.verdict(), "the JSON's verdict is the text's last line")
		assert.Equal(t, r.rep.Passed, r.code == 0)
	}
	return r
}

// runningFrom lists the live processes whose executable lies in dir or is
// one of paths, with their command lines.
func runningFrom(dir string, paths ...string) []string {
	var out []string
	for _, pid := range proc.PIDs() {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || proc.Gone(pid) {
			continue
		}
		exe = strings.TrimSuffix(exe, " (deleted)")
		match := strings.HasPrefix(exe, dir+"/")
		for _, p := range paths {
			match = match || exe == p
		}
		if match {
			args, _ := proc.Cmdline(pid)
			out = append(out, fmt.Sprintf("%d %s", pid, strings.Join(args, " ")))
		}
	}
	return out
}

// TestHandoffPasses (issue 15 a): examples/httpserver loses nothing over
// upgrades under every kind of client, HTTP/2 too, and leaves nothing.
func TestHandoffPasses(t *testing.T) {
	dir := t.TempDir()
	addr, pidFile := freeAddr(t), filepath.Join(dir, "app.pid")
	r := runChecker(t, dir, "-addr", addr, "-pidfile", pidFile, "-upgrades", "3", "-interval", "200ms",
		"-slow", "GET /slow?ms=200", "-stream", "GET /stream?s=1", "-h2c", "1", "-rate", "500",
		"--", httpserver.Path(""), "-addr", addr, "-pidfile", pidFile, "-h2c")
	require.Equal(t, 0, r.code, "stderr:\n%s", r.stderr)
	rep := r.rep
	assert.True(t, rep.Passed)
	assert.Empty(t, rep.Reasons)
	assert.Zero(t, rep.Requests.Failed)
	assert.Equal(t, rep.Requests.Total, rep.Requests.OK+rep.Requests.Unprocessed)
	assert.Equal(t, 3, rep.Upgrades.Completed)
	assert.Len(t, rep.Upgrades.List, 3)
	kinds := map[string]int{}
	for _, c := range rep.Clients {
		kinds[c.Kind] = c.Requests
	}
	for _, k := range []string{"keepalive-checked", "keepalive-blind", "new-conn", "slow", "stream", "h2c", "h2-idle"} {
		assert.Positive(t, kinds[k], "requests of %s", k)
	}
	for i, u := range rep.Upgrades.List {
		assert.True(t, u.Completed)
		assert.NotZero(t, u.NewPID)
		assert.NotEqual(t, u.OldPID, u.NewPID)
		require.NotNil(t, u.ServingMS)
		require.NotNil(t, u.OldExitMS)
		require.NotNil(t, u.LastResponseToExitMS)
		assert.LessOrEqual(t, *u.LastResponseToExitMS, *u.OldExitMS)
		assert.Nil(t, u.CommandStatus)
		if i > 0 {
			assert.Equal(t, rep.Upgrades.List[i-1].NewPID, u.OldPID, "each upgrade starts from the last one's new process")
		}
	}
	assert.Positive(t, rep.Latency.Steady.N)
	assert.Positive(t, rep.Latency.Slow.N)
	assert.Positive(t, rep.Processes.FDs.End)
	assert.Empty(t, rep.Processes.LeftBehind)
	require.NotNil(t, rep.Processes.Stop.ExitStatus, "the last generation is the checker's to reap")
	assert.Zero(t, *rep.Processes.Stop.ExitStatus)
	assert.Equal(t, rep.Upgrades.List[2].NewPID, rep.Processes.Stop.PID)
	assert.Contains(t, r.stderr, "upgrade 3/3:", "progress")
	assert.NoFileExists(t, pidFile, "the server removed its PID file on the stop")
}

// TestTableflipFails (issue 15 b): tableflip's README pattern loses
// requests on keep-alive connections; the report names them by class.
func TestTableflipFails(t *testing.T) {
	dir := t.TempDir()
	addr, pidFile := freeAddr(t), filepath.Join(dir, "app.pid")
	r := runChecker(t, dir, "-addr", addr, "-pidfile", pidFile, "-upgrades", "4", "-interval", "200ms",
		"--", tableflip.Path(""), "-addr", addr, "-pidfile", pidFile)
	require.Equal(t, 1, r.code, "stderr:\n%s", r.stderr)
	rep := r.rep
	assert.Equal(t, 4, rep.Upgrades.Completed, "tableflip's upgrades complete; its requests fail")
	require.Positive(t, rep.Requests.Failed)
	require.Len(t, rep.Reasons, 1)
	assert.Contains(t, rep.Reasons[0], fmt.Sprintf("%d failed requests, budget 0 (", rep.Requests.Failed))
	for class, n := range rep.Requests.FailedByClass {
		assert.Contains(t, r.verdict(), fmt.Sprintf("%s %d", class, n))
	}
	assert.NotEmpty(t, rep.FirstFailures)
	require.NotEmpty(t, rep.Upgrades.List)
	first := rep.Upgrades.List[0].AtS
	for _, f := range rep.FirstFailures {
		// A failure belongs to the last upgrade triggered before the
		// request started; one that started just before the first
		// trigger and failed after it is the upgrade's too.
		ended := f.AtS + f.LatencyMS/1000
		assert.True(t, f.Upgrade > 0 || ended >= first, "a failure before any upgrade (first trigger at %.3f s): %+v", first, f)
		assert.Contains(t, rep.Requests.FailedByClass, f.Class)
	}
}

// TestNaiveRestartFails (issue 15 b): a stop-and-start restart command
// refuses connections between the stop and the start.
func TestNaiveRestartFails(t *testing.T) {
	r := naiveRun(t, "", "")
	require.Equal(t, 1, r.code, "stderr:\n%s", r.stderr)
	rep := r.rep
	assert.Equal(t, 2, rep.Upgrades.Completed)
	assert.Positive(t, rep.Requests.FailedByClass["refused"], "%v", rep.Requests.FailedByClass)
	assert.Contains(t, r.verdict(), "refused ")
	for _, u := range rep.Upgrades.List {
		require.NotNil(t, u.CommandStatus)
		assert.Zero(t, *u.CommandStatus)
		assert.NotNil(t, u.CommandMS)
		assert.NotEqual(t, u.OldPID, u.NewPID)
		assert.Positive(t, u.ProbeErrors, "probes were refused between the stop and the start")
	}

	// -budget bounds the failures: the same restarts pass under a budget
	// above what they lose.
	r = naiveRun(t, "", "100000")
	require.Equal(t, 0, r.code, "stderr:\n%s", r.stderr)
	assert.Positive(t, r.rep.Requests.Failed)
	assert.Equal(t, 100000, r.rep.Config.Budget)
}

// naiveRun runs bench/naive-server under a restart command: stop the
// serving process, wait for its exit, start a new one. prefix, if set, is
// a shell prefix for the server command (to leave a process behind);
// budget, if set, is -budget.
func naiveRun(t *testing.T, prefix, budget string) *run {
	dir := t.TempDir()
	addr := freeAddr(t)
	restart := fmt.Sprintf(`kill -TERM $HANDOFF_CHECK_PID; while kill -0 $HANDOFF_CHECK_PID 2>/dev/null; do sleep 0.01; done; %s -addr $HANDOFF_CHECK_ADDR &`, naive.Path(""))
	server := []string{naive.Path(""), "-addr", addr}
	if prefix != "" {
		server = append([]string{"sh", "-c", prefix + ` exec "$0" "$@"`}, server...)
	}
	args := []string{"-addr", addr, "-upgrades", "2", "-interval", "200ms", "-stop-timeout", "5s", "-upgrade-cmd", restart}
	if budget != "" {
		args = append(args, "-budget", budget)
	}
	return runChecker(t, dir, append(append(args, "--"), server...)...)
}

// TestUpgradeDoesNotComplete (issue 15 c): a new binary that hangs before
// it is ready is rolled back by handoff; the upgrade never completes, and
// the verdict says why in one line.
func TestUpgradeDoesNotComplete(t *testing.T) {
	dir := t.TempDir()
	addr, pidFile, bin := freeAddr(t), filepath.Join(dir, "app.pid"), filepath.Join(dir, "app")
	copyFile(t, httpserver.Path(""), bin)
	install := fmt.Sprintf("cp %s %s.new && mv %s.new %s && kill -HUP $HANDOFF_CHECK_PID", httpserver.Path("hang"), bin, bin, bin)
	r := runChecker(t, dir, "-addr", addr, "-pidfile", pidFile, "-upgrades", "2", "-upgrade-timeout", "4s",
		"-upgrade-cmd", install, "--", bin, "-addr", addr, "-pidfile", pidFile, "-upgrade-timeout", "2s")
	require.Equal(t, 1, r.code, "stderr:\n%s", r.stderr)
	rep := r.rep
	assert.Zero(t, rep.Upgrades.Completed)
	require.Len(t, rep.Upgrades.List, 1, "the check ends at the first upgrade that does not complete")
	u := rep.Upgrades.List[0]
	want := fmt.Sprintf("FAIL: upgrade 1 of 2 did not complete: after 4s (-upgrade-timeout): no process other than %d answered; the old process %d still runs; the PID file still names %d",
		u.OldPID, u.OldPID, u.OldPID)
	assert.Equal(t, "handoff-check: "+want, r.verdict())
	assert.Nil(t, u.ServingMS)
	assert.Zero(t, rep.Requests.Failed, "handoff rolled back: the old generation served on")
	assert.Empty(t, rep.Processes.LeftBehind, "handoff killed the hung binary")
}

// TestLeftBehind (issue 15 c): a server that starts a helper and never
// ends it fails the check, with the helper named.
func TestLeftBehind(t *testing.T) {
	dir := t.TempDir()
	addr, pidFile := freeAddr(t), filepath.Join(dir, "app.pid")
	r := runChecker(t, dir, "-addr", addr, "-pidfile", pidFile, "-upgrades", "1", "-stop-timeout", "2s",
		"--", "sh", "-c", `sleep 600 & exec "$0" "$@"`, httpserver.Path(""), "-addr", addr, "-pidfile", pidFile)
	require.Equal(t, 1, r.code, "stderr:\n%s", r.stderr)
	rep := r.rep
	assert.Equal(t, 1, rep.Upgrades.Completed)
	assert.Zero(t, rep.Requests.Failed)
	require.Len(t, rep.Processes.LeftBehind, 1)
	lb := rep.Processes.LeftBehind[0]
	assert.Equal(t, "sleep 600", lb.Command)
	assert.Equal(t, fmt.Sprintf("handoff-check: FAIL: 1 process(es) left behind 2s after the stop (signal SIGTERM to the pid in %s): %d (sleep 600)", pidFile, lb.PID), r.verdict())
	assert.True(t, proc.Gone(lb.PID), "the checker killed it")
}

// TestServerDoesNotStart: a server that exits, or never answers, fails the
// check at once, and one whose requests are wrong fails before any
// upgrade.
func TestServerDoesNotStart(t *testing.T) {
	addr := freeAddr(t)
	r := runChecker(t, "", "-addr", addr, "--", "sh", "-c", "exit 3")
	assert.Equal(t, 1, r.code)
	assert.Equal(t, "handoff-check: FAIL: the server command exited with status 3 before it answered on "+addr, r.verdict())

	r = runChecker(t, "", "-addr", addr, "-ready-timeout", "300ms", "--", "sleep", "30")
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.verdict(), "FAIL: the server did not answer within 300ms (-ready-timeout): dial tcp "+addr)

	// The test handler answers every path, so the wrong request is one
	// that takes longer than -timeout.
	r = runChecker(t, "", "-addr", addr, "-request", "GET /", "-slow", "GET /slow?ms=5000", "-timeout", "500ms", "--", httpserver.Path(""), "-addr", addr)
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.verdict(), "handoff-check: FAIL: before any upgrade, GET /slow?ms=5000 failed: ")
	assert.Contains(t, r.verdict(), "i/o timeout (check -request, -slow, -stream)")
	assert.Zero(t, r.rep.Requests.Total)
	assert.Empty(t, r.rep.Processes.LeftBehind)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(to, b, 0o755))
}
