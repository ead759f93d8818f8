//go:build linux

package handoff_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/handoff-go/handoff/internal/servertest"
	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// The process-level tests of the one-call API: real binaries built from
// examples/quickstart (the README's quick start) and examples/httpserver
// (the same API with every knob and deliberately broken builds), upgraded
// and stopped with the signal sequences deployments send.
var quickstart, httpserver *servertest.Builds

func TestMain(m *testing.M) {
	var err error
	if quickstart, err = servertest.Build("github.com/handoff-go/handoff/examples/quickstart", raceEnabled, ""); err != nil {
		fmt.Fprintln(os.Stderr, "building the test servers:", err)
		os.Exit(2)
	}
	if httpserver, err = servertest.Build("github.com/handoff-go/handoff/examples/httpserver", raceEnabled,
		"", "no-new"); err != nil {
		quickstart.Remove()
		fmt.Fprintln(os.Stderr, "building the test servers:", err)
		os.Exit(2)
	}
	// Generations whose parent exited are reparented to this process, so
	// that the tests can reap them and see every exit status.
	if err := servertest.MakeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, "PR_SET_CHILD_SUBREAPER:", err)
		os.Exit(2)
	}
	code := m.Run()
	quickstart.Remove()
	httpserver.Remove()
	if kubernetesServer != nil {
		kubernetesServer.Remove()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// upgradePlain upgrades a server whose log is not read (the quick start):
// SIGHUP to the pid in the PID file, then the old generation must exit 0
// and the PID file name another, live process.
func upgradePlain(t *testing.T, s *servertest.Server) int {
	t.Helper()
	old := s.PID()
	s.Signal(old, syscall.SIGHUP)
	code := s.WaitExit(old, 60*time.Second)
	require.Zero(t, code, "old generation %d exit status", old)
	pid := s.PID()
	require.NotEqual(t, old, pid, "the PID file still names the old generation")
	require.NoError(t, syscall.Kill(pid, 0), "the new generation %d is not alive", pid)
	return pid
}

// eventOf matches the records of pid's events of kind.
func eventOf(pid int, kind string) func(servertest.Record) bool {
	return func(r servertest.Record) bool { return r.PID == pid && r.Event == kind }
}

// committedBy matches the record of pid's commit to another generation.
func committedBy(pid int) func(servertest.Record) bool {
	return func(r servertest.Record) bool { return r.PID == pid && r.Event == "committed" && r.TargetPID != pid }
}

// upgradeFailedOf matches pid's records of a failed upgrade.
func upgradeFailedOf(pid int) func(servertest.Record) bool {
	return func(r servertest.Record) bool { return r.PID == pid && r.Msg == servertest.MsgUpgradeFailed }
}

// loadedUpgrade is a server under the acceptance mix that was just
// signalled to upgrade to a new build.
type loadedUpgrade struct {
	s        *servertest.Server
	load     upgradertest.Config
	stopLoad func() *upgradertest.Result
	old      int // the generation that was signalled
	from     int // the mark of the log before the upgrade
}

// upgradeUnderLoad starts examples/httpserver with args, puts the
// acceptance mix on it, installs a new build and sends the generation in
// charge SIGHUP.
func upgradeUnderLoad(t *testing.T, args ...string) loadedUpgrade {
	t.Helper()
	s, _ := servertest.Start(t, httpserver, servertest.Options{Args: args})
	u := loadedUpgrade{s: s, load: upgradertest.MixedConfig(s.Addr)}
	u.stopLoad = upgradertest.Start(t.Context(), u.load)
	u.old = s.PID()
	u.from = s.Mark()
	s.Install("")
	s.Signal(u.old, syscall.SIGHUP)
	return u
}

// checkLoad stops the load and checks that it lost no request.
func (u loadedUpgrade) checkLoad(t *testing.T) {
	t.Helper()
	r := u.stopLoad()
	t.Log(r.Summary())
	assert.NoError(t, r.Check(u.load))
}

// streamInFlight starts one stream of length on s and returns once the
// generation pid holds its connection; stop waits for the stream's end and
// returns its Result.
func streamInFlight(t *testing.T, s *servertest.Server, pid int, length time.Duration) (stop func() *upgradertest.Result) {
	t.Helper()
	base := servertest.CountSockets(pid)
	stop = upgradertest.Start(t.Context(), upgradertest.Config{Addr: s.Addr,
		Workers: map[upgradertest.Kind]int{upgradertest.Stream: 1}, StreamTime: length, MaxRequests: 1})
	servertest.WaitSockets(t, pid, base+1)
	return stop
}

// drainingUpgrade is a server upgraded while a stream was in flight: the new
// generation has committed and the PID file names it, while the old one
// still drains the stream.
type drainingUpgrade struct {
	s           *servertest.Server
	old, newPID int
	from        int // the mark of the log before the upgrade
	stopStream  func() *upgradertest.Result
}

// upgradeDuringStream starts examples/httpserver with a drain timeout of
// 30 s, puts a stream of length in flight on it and upgrades it.
func upgradeDuringStream(t *testing.T, length time.Duration) drainingUpgrade {
	t.Helper()
	s, _ := servertest.Start(t, httpserver, servertest.Options{Args: []string{"-drain-timeout", "30s"}})
	old := s.PID()
	stopStream := streamInFlight(t, s, old, length)
	from := s.Mark()
	s.Install("")
	s.Signal(old, syscall.SIGHUP)
	newPID := s.WaitRecord(from, 30*time.Second, committedBy(old)).TargetPID
	s.WaitPIDFile(newPID, 10*time.Second)
	return drainingUpgrade{s: s, old: old, newPID: newPID, from: from, stopStream: stopStream}
}

// TestQuickstartUnderLoad (issue 9 a, and 14 b with the hand-over on, as it
// is by default): the README's quick start, upgraded 50 times under the
// mixed load of clients that never retry, loses no request and completes
// every stream; the keep-alive clients keep their connections (their
// reconnects per upgrade are near 0: the connections move to the new
// generation instead of being told to close); every old generation exits 0
// and nothing is left running.
func TestQuickstartUnderLoad(t *testing.T) {
	upgrades := 50
	if testing.Short() {
		upgrades = 5
	}
	s, _ := servertest.Start(t, quickstart, servertest.Options{Plain: true})
	load := upgradertest.MixedConfig(s.Addr)
	stop := upgradertest.Start(t.Context(), load)
	pids := map[int]bool{s.First: true}
	for i := range upgrades {
		pid := upgradePlain(t, s)
		require.False(t, pids[pid], "upgrade %d: pid %d served before", i+1, pid)
		pids[pid] = true
	}
	r := stop()
	t.Log(r.Summary())
	assert.NoError(t, r.Check(load))
	assert.GreaterOrEqual(t, len(r.PIDs()), upgrades, "pids that answered")
	perUpgrade := float64(r.Reconnects(-1)) / float64(upgrades)
	t.Logf("keep-alive reconnects per upgrade: %.2f (checked %d, blind %d, slow %d over %d upgrades)", perUpgrade,
		r.Reconnects(upgradertest.KeepAliveChecked), r.Reconnects(upgradertest.KeepAliveBlind), r.Reconnects(upgradertest.Slow), upgrades)
	assert.LessOrEqual(t, perUpgrade, 0.5, "keep-alive clients dialled again at upgrades")
	assert.Zero(t, s.Stop(), "exit status of the last generation")
	assert.Empty(t, servertest.Descendants(s.Bin), "processes left")
	assert.Empty(t, servertest.Children(os.Getpid()), "children (zombies or orphans) left")
}

// ended checks the end of a sequence: of the processes that ran the server
// (the first generation has exited already), each has exited (with status 0,
// where this process reaps it) or is the one generation left, which the
// PID file then names and which answers. It returns that generation's pid,
// or 0 when none is left. A process that lives on without being named by
// the PID file must exit within the bound.
func ended(t *testing.T, s *servertest.Server, pids []int, within time.Duration) int {
	t.Helper()
	alive := 0
	for _, pid := range pids {
		if pid == 0 {
			continue
		}
		if p, err := s.ReadPID(); err == nil && p == pid && syscall.Kill(pid, 0) == nil {
			require.Zero(t, alive, "pids %d and %d are both in charge; log:\n%s", alive, pid, s.LogText(0))
			alive = pid
			continue
		}
		code, err := s.TryWaitExit(pid, within)
		var nc *servertest.NotChildError
		if !errors.As(err, &nc) {
			require.NoError(t, err, "log:\n%s", s.LogText(0))
			assert.Zero(t, code, "pid %d exit status", pid)
		}
	}
	if left := servertest.Descendants(s.Bin); alive == 0 {
		require.Empty(t, left, "processes left; log:\n%s", s.LogText(0))
	} else {
		require.Equal(t, []int{alive}, left, "processes left")
		assert.Equal(t, strconv.Itoa(alive), strings.TrimSpace(servertest.Get(t, "tcp", s.Addr, "/pid")))
	}
	return alive
}

// TestHupThenTerm (issue 9 b): SIGHUP and then SIGTERM to the generation in
// charge, as deploy tools send a reload and a stop back to back, the
// SIGTERM landing in each phase of the upgrade. A stop before the commit
// rolls the upgrade back and stops the service; after the commit it stops
// the old generation only. Either way the sequence ends with no process or
// exactly one generation serving (named by the PID file), every request
// that got a connection is answered, and the stop takes no longer than the
// drain timeout plus 1 s.
func TestHupThenTerm(t *testing.T) {
	const drain = 5 * time.Second
	runs := []struct {
		name  string
		delay time.Duration // after SIGHUP
		event string        // or: on this event of the old generation
	}{
		{"spawn/0ms", 0, ""}, {"spawn/1ms", time.Millisecond, ""}, {"spawn/3ms", 3 * time.Millisecond, ""},
		{"spawn/5ms", 5 * time.Millisecond, ""}, {"spawn/10ms", 10 * time.Millisecond, ""},
		{"init", 0, "spawned"}, {"probation", 0, "accepting"}, {"probation/late", 150 * time.Millisecond, "accepting"},
		{"commit", 0, "probation-passed"}, {"committed", 0, "committed"},
	}
	for _, run := range runs {
		t.Run(run.name, func(t *testing.T) {
			s, _ := servertest.Start(t, httpserver, servertest.Options{Args: []string{
				"-probation", "300ms", "-drain-timeout", drain.String(), "-upgrade-timeout", "20s"}})
			load := upgradertest.Config{Addr: s.Addr, Workers: map[upgradertest.Kind]int{
				upgradertest.KeepAliveChecked: 2, upgradertest.KeepAliveBlind: 2, upgradertest.NewConn: 2,
				upgradertest.Stream: 1}, StreamTime: time.Second}
			stop := upgradertest.Start(t.Context(), load)
			old := s.PID()
			from := s.Mark()
			s.Install("")
			s.Signal(old, syscall.SIGHUP)
			if run.event != "" {
				s.WaitRecord(from, 30*time.Second, eventOf(old, run.event))
			}
			time.Sleep(run.delay) // the scenario's delay, not a synchronisation
			termAt := time.Now()
			s.Signal(old, syscall.SIGTERM)
			code, err := s.TryWaitExit(old, drain+time.Second+2*time.Second)
			took := time.Since(termAt)
			require.NoError(t, err, "log:\n%s", s.LogText(from))
			assert.Zero(t, code, "old generation exit status")
			assert.LessOrEqual(t, took, drain+time.Second, "the stop took %s", took)
			spawned, _ := s.FindRecord(from, 0, eventOf(old, "spawned"))
			left := ended(t, s, []int{spawned.TargetPID}, 30*time.Second)
			r := stop()
			t.Logf("stop after %s; generation left: %d; %s", took, left, r.Summary())
			if left == 0 {
				r = stoppedService(r, termAt)
			}
			f := r.Failures()
			delete(f, upgradertest.Refused) // the service was stopped: new connections are refused
			assert.Empty(t, f, "requests that got a connection and failed:\n%s", r.FirstFailures(10))
			if left != 0 {
				assert.Zero(t, s.Stop())
			}
		})
	}
}

// stoppedService returns r without the resets of new connections dialled
// after the stop at stopAt of a service that no generation serves any more.
// Clients still connecting to a stopped server are refused, except those
// whose handshake the kernel completed between the listener's last accept
// and its close (listener.Finish takes the backlog, and the window after it
// is microseconds, but a client that connects every few milliseconds can
// hit it): the close resets them before any byte of a response, so, like a
// refused one, the request never reached the server.
func stoppedService(r *upgradertest.Result, stopAt time.Time) *upgradertest.Result {
	kept := r.Samples[:0:0]
	for _, s := range r.Samples {
		fresh := s.Kind == upgradertest.NewConn || s.Reconnect
		if s.Class == upgradertest.Reset && fresh && s.Start.After(stopAt) {
			continue
		}
		kept = append(kept, s)
	}
	out := *r
	out.Samples = kept
	return &out
}

// TestSecondHupDuringProbation (issue 9 b): a newer binary installed and
// signalled while the previous upgrade is on probation ends up serving: the
// follow-up request is carried out by the new generation once it is in
// charge.
func TestSecondHupDuringProbation(t *testing.T) {
	u := upgradeUnderLoad(t, "-probation", "1s")
	s, old, from := u.s, u.old, u.from
	s.WaitRecord(from, 30*time.Second, eventOf(old, "accepting"))
	newest := s.Install("")
	s.Signal(old, syscall.SIGHUP)
	r := s.WaitRecord(from, 60*time.Second, committedBy(old))
	second := r.TargetPID
	third := s.WaitRecord(from, 60*time.Second, committedBy(second)).TargetPID
	assert.Zero(t, s.WaitExit(old, 60*time.Second))
	assert.Zero(t, s.WaitExit(second, 60*time.Second))
	assert.True(t, servertest.Runs(third, newest), "generation 3 (pid %d) does not run the newest binary", third)
	_, forwarded := s.FindRecord(from, 0, eventOf(old, "forwarded"))
	assert.True(t, forwarded, "the old generation did not forward the follow-up")
	s.WaitPIDFile(third, 10*time.Second)
	u.checkLoad(t)
	assert.Equal(t, strconv.Itoa(third), strings.TrimSpace(servertest.Get(t, "tcp", s.Addr, "/pid")))
	assert.Zero(t, s.Stop())
	assert.Empty(t, servertest.Descendants(s.Bin))
}

// TestTermAtCommit (issue 9 b): a SIGTERM to the old generation at the
// moment it logs the commit stops the old generation only: exactly one
// generation serves, named by the PID file, and no request is lost.
func TestTermAtCommit(t *testing.T) {
	u := upgradeUnderLoad(t, "-probation", "200ms")
	s, old, from := u.s, u.old, u.from
	r := s.WaitRecord(from, 30*time.Second, committedBy(old))
	s.Signal(old, syscall.SIGTERM)
	assert.Zero(t, s.WaitExit(old, 40*time.Second))
	left := ended(t, s, []int{r.TargetPID}, 5*time.Second)
	assert.Equal(t, r.TargetPID, left, "the new generation must serve on")
	u.checkLoad(t)
	assert.Zero(t, s.Stop())
}

// TestSignalsDuringStopDrain (issue 9 b): SIGHUP and SIGUSR2 while a SIGTERM
// drains are ignored: no upgrade starts, the stream in flight completes and
// the process exits 0.
func TestSignalsDuringStopDrain(t *testing.T) {
	s, _ := servertest.Start(t, httpserver, servertest.Options{})
	pid := s.PID()
	stop := streamInFlight(t, s, pid, 3*time.Second)
	from := s.Mark()
	s.Signal(pid, syscall.SIGTERM)
	s.WaitRecord(from, 10*time.Second, func(r servertest.Record) bool { return r.Msg == servertest.MsgStopping })
	s.Install("")
	for range 3 {
		s.Signal(pid, syscall.SIGHUP)
		s.Signal(pid, syscall.SIGUSR2)
	}
	assert.Zero(t, s.WaitExit(pid, 30*time.Second))
	r := stop()
	assert.Zero(t, r.Failed(), r.FirstFailures(5))
	assert.Equal(t, 1, r.Count(upgradertest.Stream))
	for _, rec := range s.RecordsSince(from) {
		assert.NotEqual(t, "triggered", rec.Event, "an upgrade started during the stop: %s", rec.Raw)
	}
	assert.Empty(t, servertest.Descendants(s.Bin))
}

// TestTermNewGenerationInProbation (issue 9 b): SIGTERM to the new
// generation while it is on probation (a stop sent to the wrong pid) is a
// rollback: the old generation serves on, named by the PID file, and no
// request is lost.
func TestTermNewGenerationInProbation(t *testing.T) {
	u := upgradeUnderLoad(t, "-probation", "3s", "-upgrade-timeout", "20s")
	s, old, from := u.s, u.old, u.from
	newPID := s.WaitRecord(from, 30*time.Second, eventOf(old, "accepting")).TargetPID
	s.Signal(newPID, syscall.SIGTERM)
	r := s.WaitRecord(from, 30*time.Second, func(r servertest.Record) bool {
		return r.PID == old && (r.Event == "rolled-back" || r.Event == "committed")
	})
	require.Equal(t, "rolled-back", r.Event, r.Raw)
	assert.Contains(t, r.Error, "stopped")
	// The old generation reaps it; only its end is seen here.
	_, err := s.TryWaitExit(newPID, 30*time.Second)
	var nc *servertest.NotChildError
	assert.ErrorAs(t, err, &nc, "the stopped new generation must be gone")
	assert.NotContains(t, s.LogText(from), "signal: killed", "the stopped new generation was killed, not drained")
	u.checkLoad(t)
	assert.Equal(t, old, s.PID())
	assert.Equal(t, strconv.Itoa(old), strings.TrimSpace(servertest.Get(t, "tcp", s.Addr, "/pid")))
	assert.Empty(t, servertest.Children(old), "children of the old generation left")
	assert.Zero(t, s.Stop())
}

// TestKillNewGenerationWhileOldDrains (issue 9 b): the new generation killed
// (kill -9) after the commit, while the old one still drains a long stream
// and holds the sockets: the old one says so, answers again within a
// second, takes the PID file back, finishes the stream, and stops cleanly.
func TestKillNewGenerationWhileOldDrains(t *testing.T) {
	u := upgradeDuringStream(t, 6*time.Second)
	s, old, newPID, from := u.s, u.old, u.newPID, u.from
	require.Equal(t, strconv.Itoa(newPID), strings.TrimSpace(servertest.Get(t, "tcp", s.Addr, "/pid")))

	s.Signal(newPID, syscall.SIGKILL)
	killed := time.Now()
	var answered string
	for time.Since(killed) < 10*time.Second { // bounded
		body, err := servertest.TryGet("tcp", s.Addr, "/pid", 200*time.Millisecond)
		if err == nil {
			answered = strings.TrimSpace(body)
			break
		}
	}
	took := time.Since(killed)
	assert.Equal(t, strconv.Itoa(old), answered, "the old generation must answer again")
	assert.Less(t, took, time.Second, "the service answered again after %s", took)
	t.Logf("answered again %s after the kill", took)
	r := s.WaitRecord(from, 10*time.Second, eventOf(old, "reclaimed"))
	assert.Contains(t, r.Error, "died")
	s.WaitPIDFile(old, 10*time.Second)
	res := u.stopStream()
	assert.Zero(t, res.Failed(), "the stream on the old generation: %s", res.FirstFailures(5))

	// It serves on, but cannot start another generation.
	mark := s.Mark()
	s.Signal(old, syscall.SIGHUP)
	f := s.WaitRecord(mark, 10*time.Second, upgradeFailedOf(old))
	assert.Contains(t, f.Error, "restart the service")
	assert.Zero(t, s.Stop())
	assert.Empty(t, servertest.Descendants(s.Bin))
}

// TestHupWhenPIDFileNamesNew (issue 9 b): a SIGHUP sent the moment the PID
// file names the new generation is carried out, 60 times in a row: the new
// generation takes it once its parent has exited.
func TestHupWhenPIDFileNamesNew(t *testing.T) {
	rounds := 60
	if testing.Short() {
		rounds = 10
	}
	s, _ := servertest.Start(t, httpserver, servertest.Options{})
	w, err := fsnotify.NewWatcher()
	require.NoError(t, err)
	defer w.Close()
	require.NoError(t, w.Add(filepath.Dir(s.PIDFile)))
	pid := s.PID()
	seen := []int{pid}
	s.Signal(pid, syscall.SIGHUP)
	for len(seen) <= rounds {
		// Wait for the PID file to name another process, then signal it
		// at once.
		timeout := time.After(60 * time.Second)
		next := 0
		for next == 0 {
			select {
			case ev := <-w.Events:
				if ev.Name != s.PIDFile || !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Write) {
					continue
				}
				if p, err := s.ReadPID(); err == nil && !slices.Contains(seen, p) {
					next = p
				}
			case err := <-w.Errors:
				require.NoError(t, err)
			case <-timeout:
				require.FailNow(t, "no new generation", "after %d rounds; log:\n%s", len(seen)-1, s.LogText(0))
			}
		}
		seen = append(seen, next)
		if len(seen) <= rounds {
			s.Signal(next, syscall.SIGHUP)
		}
	}
	t.Logf("%d signals sent the moment the PID file named the new generation; all carried out", rounds)
	for _, r := range s.RecordsSince(0) {
		assert.NotEqual(t, servertest.MsgUpgradeFailed, r.Msg, r.Raw)
	}
	last := seen[len(seen)-1]
	for _, p := range seen[:len(seen)-1] {
		assert.Zero(t, s.WaitExit(p, 60*time.Second))
	}
	assert.Equal(t, last, s.PID())
	assert.Zero(t, s.Stop())
	assert.Empty(t, servertest.Descendants(s.Bin))
}

// TestNeverContacts (issue 9 b): a new binary that never contacts the old
// generation (it never calls New) is rolled back at UpgradeTimeout, as its
// error says, and is not left running.
func TestNeverContacts(t *testing.T) {
	const timeout = 3 * time.Second
	s, _ := servertest.Start(t, httpserver, servertest.Options{Args: []string{"-upgrade-timeout", timeout.String()}})
	old := s.PID()
	s.Install("no-new")
	from := s.Mark()
	hup := time.Now()
	s.Signal(old, syscall.SIGHUP)
	r := s.WaitRecord(from, 30*time.Second, upgradeFailedOf(old))
	took := time.Since(hup)
	assert.Contains(t, r.Error, "no contact within 3s (Options.UpgradeTimeout)")
	assert.GreaterOrEqual(t, took, timeout)
	assert.Less(t, took, timeout+time.Second, "rolled back %s after the signal", took)
	assert.Empty(t, servertest.Children(old), "the binary that never called New is still running")
	assert.Equal(t, strconv.Itoa(old), strings.TrimSpace(servertest.Get(t, "tcp", s.Addr, "/pid")))
	s.Install("")
	s.Upgrade()
	assert.Zero(t, s.Stop())
}

// TestTermNewGenerationWhileOldDrains: SIGTERM to the new generation after
// the commit, while the old one still drains a stream, is a stop of the
// service, not a death: the old one finishes its stream and exits without
// taking charge again, and nothing is left.
func TestTermNewGenerationWhileOldDrains(t *testing.T) {
	u := upgradeDuringStream(t, 3*time.Second)
	s, old, newPID, from := u.s, u.old, u.newPID, u.from
	s.Signal(newPID, syscall.SIGTERM)
	r := s.WaitRecord(from, 10*time.Second, eventOf(old, "successor-exited"))
	assert.Contains(t, r.Error, "was stopped")
	assert.Zero(t, s.WaitExit(old, 30*time.Second))
	res := u.stopStream()
	assert.Zero(t, res.Failed(), "the stream on the old generation: %s", res.FirstFailures(5))
	for _, rec := range s.RecordsSince(from) {
		assert.NotEqual(t, "reclaimed", rec.Event, rec.Raw)
	}
	ended(t, s, []int{newPID}, 10*time.Second)
	_, err := os.Stat(s.PIDFile)
	assert.True(t, os.IsNotExist(err), "the PID file is left: %v", err)
}

// TestPIDFileUnwritableAtCommit (issue 9): a PID file that cannot be written
// at the commit fails the upgrade before the commit, with an error that
// names the file and the cause; the old generation serves on.
func TestPIDFileUnwritableAtCommit(t *testing.T) {
	s, _ := servertest.Start(t, httpserver, servertest.Options{PIDFile: "run/server.pid"})
	old := s.PID()
	run := filepath.Dir(s.PIDFile)
	// The directory becomes a file: no temporary file can be made there,
	// root or not.
	require.NoError(t, os.Rename(run, run+".away"))
	require.NoError(t, os.WriteFile(run, nil, 0o644))
	s.Install("")
	from := s.Mark()
	s.Signal(old, syscall.SIGHUP)
	r := s.WaitRecord(from, 30*time.Second, upgradeFailedOf(old))
	assert.Contains(t, r.Error, "cannot write the PID file "+s.PIDFile)
	assert.Contains(t, r.Error, "not a directory")
	assert.Contains(t, r.Error, "in commit")
	spawned := s.WaitRecord(from, 0, eventOf(old, "spawned")).TargetPID
	_, err := s.TryWaitExit(spawned, 30*time.Second)
	var nc *servertest.NotChildError
	assert.ErrorAs(t, err, &nc, "the new generation must be gone")
	assert.Equal(t, strconv.Itoa(old), strings.TrimSpace(servertest.Get(t, "tcp", s.Addr, "/pid")))
	require.NoError(t, os.Remove(run))
	require.NoError(t, os.Rename(run+".away", run))
	s.Signal(old, syscall.SIGTERM)
	assert.Zero(t, s.WaitExit(old, 30*time.Second))
}
