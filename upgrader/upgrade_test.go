//go:build linux

package upgrader_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/internal/servertest"
	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// pidOf returns what /pid answers on network/addr.
func pidOf(t *testing.T, network, addr string) string {
	t.Helper()
	return strings.TrimSpace(servertest.Get(t, network, addr, "/pid"))
}

// TestUpgradesLeakNothing: 10 consecutive upgrades under a mixed load (the
// 50-upgrade acceptance run is the root package's TestQuickstartUnderLoad)
// lose no request and leak no fd or process: the serving process holds the
// same fds in generation 2 and in generation 11.
func TestUpgradesLeakNothing(t *testing.T) {
	const upgrades = 10
	// An idle grace of 1 s, not the default 300 ms: with the race detector
	// on a loaded 2-core machine, this test's own clients are sometimes
	// descheduled for longer than 300 ms between two requests, and a blind
	// client that sends on a connection the server has just closed fails.
	s := start(t, "-drain-timeout", "20s", "-idle-grace", "1s")
	load := upgradertest.MixedConfig(s.Addr)
	stop := upgradertest.Start(t.Context(), load)

	// fds are counted just before a generation is upgraded, when it has
	// served for a while and its start-up is long over.
	var fdsFirst, fdsLast []string
	pids := map[int]bool{s.First: true}
	for i := range upgrades {
		if i == 1 {
			fdsFirst = s.SettledFDs(s.PID())
		}
		pid := s.Upgrade()
		require.False(t, pids[pid], "upgrade %d: pid %d served before", i+1, pid)
		pids[pid] = true
	}
	fdsLast = s.SettledFDs(s.PID())
	r := stop()
	t.Log(r.Summary())
	assert.NoError(t, r.Check(load))
	if r.Failed() > 0 {
		for _, rec := range s.RecordsSince(0) {
			if rec.Event == "drain-finished" || rec.Event == "rolled-back" || rec.Msg == servertest.MsgUpgradeFailed {
				t.Log(rec.Raw)
			}
		}
	}
	assert.GreaterOrEqual(t, len(r.PIDs()), upgrades, "pids that answered")
	t.Logf("fds of the serving process (client connections left out): %d in generation 2, %d in generation %d", len(fdsFirst), len(fdsLast), upgrades+1)
	assert.Len(t, fdsLast, len(fdsFirst), "fds changed over %d upgrades:\n%v\n%v", upgrades, fdsFirst, fdsLast)
	last := s.PID()
	assert.Zero(t, s.Stop(), "exit status of the last generation")
	assert.Empty(t, servertest.Descendants(s.Bin), "processes left (last generation was %d)", last)
	assert.Empty(t, servertest.Children(os.Getpid()), "children (zombies or orphans) left")
}

// TestRollback: every kind of broken new binary is rolled back with the
// matching error while the old generation serves without a failed request;
// the old generation reaps the broken one, then upgrades to a good binary,
// and no child is left behind.
func TestRollback(t *testing.T) {
	cases := []struct {
		variant string
		want    []string // in the error of the "upgrade failed" record
	}{
		{"exit", []string{"new generation exited with exit status 3"}},
		{"hang", []string{"new generation timed out", "not committed within"}},
		{"unhealthy", []string{"new generation unhealthy", "health check failed: deliberately broken binary: unhealthy"}},
		{"probation-unhealthy", []string{"unhealthy during probation"}},
		{"crash", []string{"exited with exit status 2"}},
	}
	for _, tc := range cases {
		t.Run(tc.variant, func(t *testing.T) {
			s := start(t, "-probation", "600ms", "-upgrade-timeout", "4s", "-drain-timeout", "10s")
			load := upgradertest.MixedConfig(s.Addr)
			if tc.variant == "crash" {
				// A process that crashes loses the connections it holds;
				// what is checked here is that the old generation takes
				// over. Keep-alive clients stay on the old generation
				// (paused, not closed) through probation; new connections
				// would land on the crashing one.
				delete(load.Workers, upgradertest.NewConn)
				delete(load.Workers, upgradertest.Stream)
			}
			stop := upgradertest.Start(t.Context(), load)
			old := s.PID()

			s.Install(tc.variant)
			from := s.Mark()
			s.Signal(old, syscall.SIGHUP)
			r := s.WaitRecord(from, 60*time.Second, func(r servertest.Record) bool {
				return r.PID == old && (r.Msg == servertest.MsgUpgradeFailed || r.Event == "committed")
			})
			require.Equal(t, servertest.MsgUpgradeFailed, r.Msg, "broken binary committed: %s", r.Raw)
			for _, want := range tc.want {
				assert.Contains(t, r.Error, want)
			}
			assert.Empty(t, servertest.Children(old), "children of %d left after the rollback", old)
			rb, ok := s.FindRecord(from, 0, func(r servertest.Record) bool { return r.Event == "rolled-back" && r.PID == old })
			assert.True(t, ok, "no rolled-back event")
			if ok && (tc.variant == "hang" || tc.variant == "unhealthy") {
				// It never said healthy, so it holds no connection: it
				// answers the rollback and is ended at once, not after
				// the drain timeout (10 s).
				t0, err1 := time.Parse(time.RFC3339Nano, rb.Time)
				t1, err2 := time.Parse(time.RFC3339Nano, r.Time)
				require.NoError(t, errors.Join(err1, err2))
				assert.Less(t, t1.Sub(t0), 3*time.Second, "from the rollback to the end of the upgrade")
			}
			if rb.TargetPID != 0 {
				// The old generation reaps it; only its end is seen here.
				_, err := s.TryWaitExit(rb.TargetPID, 10*time.Second)
				var nc *servertest.NotChildError
				assert.ErrorAs(t, err, &nc, "the rolled-back generation %d must be gone", rb.TargetPID)
			}
			assert.Equal(t, strconv.Itoa(old), pidOf(t, "tcp", s.Addr), "/pid after the rollback")
			assert.Equal(t, old, s.PID(), "the PID file after the rollback")

			s.Install("")
			pid := s.Upgrade()
			res := stop()
			t.Log(res.Summary())
			assert.NoError(t, res.Check(load))
			assert.Equal(t, strconv.Itoa(pid), pidOf(t, "tcp", s.Addr), "/pid after the good upgrade")
			assert.Zero(t, s.Stop(), "exit status")
			assert.Empty(t, servertest.Descendants(s.Bin), "processes left")
		})
	}
}

// TestSignalStorm: 20 SIGHUPs within 100 ms to the generation in charge give
// exactly 2 upgrades: the first, and one follow-up into which every signal
// that arrived while the first ran collapses. The first commits, so the old
// generation forwards the follow-up to the new one, which carries it out
// once the old one has exited: generation 3 serves, and both older
// generations exit 0.
func TestSignalStorm(t *testing.T) {
	s := start(t, "-probation", "300ms")
	old := s.PID()
	from := s.Mark()
	for range 20 {
		s.Signal(old, syscall.SIGHUP)
		time.Sleep(5 * time.Millisecond) // spreads the storm over 100 ms; not a synchronisation
	}
	second := s.WaitRecord(from, 60*time.Second, func(r servertest.Record) bool {
		return r.PID == old && r.Event == "committed" && r.TargetPID != old
	}).TargetPID
	third := s.WaitRecord(from, 60*time.Second, func(r servertest.Record) bool {
		return r.PID == second && r.Event == "committed" && r.TargetPID != second
	}).TargetPID
	assert.Zero(t, s.WaitExit(old, 60*time.Second), "generation 1 exit status")
	assert.Zero(t, s.WaitExit(second, 60*time.Second), "generation 2 exit status")
	s.WaitPIDFile(third, 10*time.Second)

	fwd, ok := s.FindRecord(from, 0, func(r servertest.Record) bool { return r.PID == old && r.Event == "forwarded" })
	if assert.True(t, ok, "generation 1 did not forward the follow-up; log:\n%s", s.LogText(from)) {
		assert.Equal(t, second, fwd.TargetPID, "the follow-up went to")
	}
	triggered := map[int]int{}
	parentExited := false // as generation 2 logs it, in its own order
	for _, r := range s.RecordsSince(from) {
		if r.PID == second && r.Event == "parent-exited" {
			parentExited = true
		}
		if r.Event == "triggered" {
			triggered[r.PID]++
			if r.PID == second {
				assert.True(t, parentExited, "generation 2 upgraded before it saw generation 1 exit")
			}
		}
		assert.NotEqual(t, servertest.MsgUpgradeFailed, r.Msg, r.Raw)
	}
	assert.Equal(t, map[int]int{old: 1, second: 1}, triggered, "upgrades started, per generation; log:\n%s", s.LogText(from))

	// Generation 3 got no signal: it stays generation 3 while it answers.
	body := servertest.Get(t, "tcp", s.Addr, "/")
	assert.True(t, strings.HasPrefix(body, fmt.Sprintf("pid %d generation 3", third)), "/ answered %q", body)
	assert.Zero(t, s.Stop(), "exit status")
	assert.Empty(t, servertest.Descendants(s.Bin), "processes left")
}

// TestUnixAndUDP: a unix-socket listener and a UDP socket keep their
// addresses across an upgrade and answer after it.
func TestUnixAndUDP(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "http.sock")
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	udpAddr := pc.LocalAddr().String()
	pc.Close() // free it for the server; a race with another binder is unlikely on loopback
	s := start(t, "-unix", sock, "-udp", udpAddr)
	old := s.PID()
	require.Equal(t, strconv.Itoa(old), pidOf(t, "unix", sock), "unix socket before the upgrade")
	require.Equal(t, fmt.Sprintf("pid %d: before", old), udpEcho(t, udpAddr, "before"), "udp before the upgrade")
	pid := s.Upgrade()
	assert.Equal(t, strconv.Itoa(pid), pidOf(t, "unix", sock), "unix socket after the upgrade")
	assert.Equal(t, fmt.Sprintf("pid %d: after", pid), udpEcho(t, udpAddr, "after"), "udp after the upgrade")
	assert.Zero(t, s.Stop(), "exit status")
	assert.NoFileExists(t, sock, "unix socket file left after the final stop")
}

func udpEcho(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	require.NoError(t, err)
	defer c.Close()
	buf := make([]byte, 1024)
	// UDP may drop; retry a bounded number of times.
	for range 20 {
		_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
		_, err := c.Write([]byte(msg))
		require.NoError(t, err)
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n])
		}
	}
	require.FailNow(t, "no UDP answer", "from %s", addr)
	return ""
}

// TestStopDrains: SIGTERM lets slow requests and streams finish, then the
// process exits 0; a second SIGTERM exits at once.
func TestStopDrains(t *testing.T) {
	s := start(t)
	pid := s.PID()
	base := servertest.CountSockets(pid)
	stop := upgradertest.Start(t.Context(), upgradertest.Config{
		Addr: s.Addr,
		Workers: map[upgradertest.Kind]int{
			upgradertest.Slow:             4,
			upgradertest.Stream:           4,
			upgradertest.KeepAliveChecked: 4,
		},
		SlowTime:    2 * time.Second,
		StreamTime:  2 * time.Second,
		MaxRequests: 1,
	})
	// Wait until every worker's request is in flight at the server.
	servertest.WaitSockets(t, pid, base+8)
	s.Signal(pid, syscall.SIGTERM)
	code := s.WaitExit(pid, 30*time.Second)
	r := stop()
	assert.Zero(t, code, "exit status")
	assert.Zero(t, r.Failed(), "failed: %s\nlog:\n%s", r.FirstFailures(10), s.LogText(0))
	assert.Equal(t, 4, r.Count(upgradertest.Stream), "streams")

	// A second SIGTERM while a long stream drains exits at once.
	s2 := start(t)
	pid2 := s2.PID()
	base2 := servertest.CountSockets(pid2)
	stop2 := upgradertest.Start(t.Context(), upgradertest.Config{Addr: s2.Addr, Workers: map[upgradertest.Kind]int{upgradertest.Stream: 1}, StreamTime: 60 * time.Second, MaxRequests: 1})
	servertest.WaitSockets(t, pid2, base2+1)
	from := s2.Mark()
	s2.Signal(pid2, syscall.SIGTERM)
	s2.WaitRecord(from, 10*time.Second, func(r servertest.Record) bool { return r.Msg == servertest.MsgStopping })
	s2.Signal(pid2, syscall.SIGTERM)
	code2 := s2.WaitExit(pid2, 30*time.Second)
	r2 := stop2()
	assert.Equal(t, 1, code2, "exit status after a second SIGTERM")
	assert.Equal(t, 1, r2.Failures()[upgradertest.Truncated], "the 60 s stream should have been cut by the immediate stop: %v", r2.Failures())
}

// TestStateHandOver: the blob of generation N is read by N+1; too large a
// blob fails the upgrade before anything is started.
func TestStateHandOver(t *testing.T) {
	s := start(t)
	old := s.PID()
	servertest.Get(t, "tcp", s.Addr, "/")
	servertest.Get(t, "tcp", s.Addr, "/")
	s.Upgrade()
	assert.Equal(t, fmt.Sprintf("from pid %d, served 2", old), strings.TrimSpace(servertest.Get(t, "tcp", s.Addr, "/state")), "the new generation's state")
	assert.Zero(t, s.Stop(), "exit status")

	big := start(t, "-state-pad", strconv.Itoa(2<<20))
	old = big.PID()
	from := big.Mark()
	big.Signal(old, syscall.SIGHUP)
	r := big.WaitRecord(from, 30*time.Second, func(r servertest.Record) bool {
		return r.Msg == servertest.MsgUpgradeFailed || r.Event == "committed"
	})
	assert.Contains(t, r.Error, "state blob too large")
	assert.Contains(t, r.Error, "limit 1048576")
	for _, r := range big.RecordsSince(from) {
		assert.NotContains(t, []string{"triggered", "spawned"}, r.Event, "an upgrade was started: %s", r.Raw)
	}
	assert.Equal(t, strconv.Itoa(old), pidOf(t, "tcp", big.Addr), "/pid")
	assert.Zero(t, big.Stop(), "exit status")
}

// TestMalformedEnvironment: a process that claims a parent but did not get
// its fds fails New with a clear error, never a panic.
func TestMalformedEnvironment(t *testing.T) {
	regular, err := os.CreateTemp(t.TempDir(), "fd")
	require.NoError(t, err)
	defer regular.Close()
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	defer pr.Close()
	_, err = pw.Write([]byte("garbage, not a gob"))
	require.NoError(t, err)
	pw.Close()
	pr2, pw2, err := os.Pipe()
	require.NoError(t, err)
	defer pr2.Close()
	defer pw2.Close()

	cases := []struct {
		name  string
		files []*os.File
		want  string
	}{
		{"fds missing", nil, "fd 3 is not"},
		{"fds not pipes", []*os.File{regular, regular}, "fd 3 is not a pipe"},
		{"garbage from parent", []*os.File{pw2, pr}, "malformed inherited environment"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(servers.Path(""), "-addr", "127.0.0.1:0")
			cmd.Dir = t.TempDir()
			cmd.Env = append(os.Environ(), "TABLEFLIP_HAS_PARENT_7DIU3=yes")
			cmd.ExtraFiles = tc.files
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "output:\n%s", out)
			require.Equal(t, 1, ee.ExitCode(), "exit status; output:\n%s", out)
			assert.Contains(t, string(out), "malformed inherited environment")
			assert.Contains(t, string(out), tc.want)
			assert.NotContains(t, string(out), "panic")
		})
	}
}

// TestMissingBinary: a binary missing at the path the server was started
// from is a clear error; the server keeps serving and upgrades once the
// binary is back.
func TestMissingBinary(t *testing.T) {
	s := start(t)
	old := s.PID()
	require.NoError(t, os.Remove(s.Bin))
	from := s.Mark()
	s.Signal(old, syscall.SIGHUP)
	r := s.WaitRecord(from, 30*time.Second, func(r servertest.Record) bool { return r.PID == old && r.Msg == servertest.MsgUpgradeFailed })
	assert.Contains(t, r.Error, "cannot start the new generation")
	assert.Contains(t, r.Error, "no such file")
	assert.Equal(t, strconv.Itoa(old), pidOf(t, "tcp", s.Addr), "/pid")
	s.Install("")
	s.Upgrade()
	assert.Zero(t, s.Stop(), "exit status")
}

// TestMixedProtocolVersions upgrades between this release and a build that
// speaks the control protocol as the release before accept-on-healthy did
// (its hello and welcome leave the step out): a new generation of either
// kind under a parent of the other commits, or rolls back when it fails its
// probation, with no failed request. A new generation that does not speak
// the step waits for accept: it says it is ready only after its parent has
// paused.
func TestMixedProtocolVersions(t *testing.T) {
	s := start(t, "-probation", "300ms", "-upgrade-timeout", "4s", "-drain-timeout", "10s")
	load := upgradertest.MixedConfig(s.Addr)
	stop := upgradertest.Start(t.Context(), load)

	// upgrade installs variant and upgrades; it returns the records of the
	// upgrade and the pid in charge after it.
	upgrade := func(variant string, commits bool) []servertest.Record {
		t.Helper()
		s.Install(variant)
		old, from := s.PID(), s.Mark()
		if commits {
			s.Upgrade()
			return s.RecordsSince(from)
		}
		s.Signal(old, syscall.SIGHUP)
		r := s.WaitRecord(from, 60*time.Second, func(r servertest.Record) bool {
			return r.PID == old && (r.Msg == servertest.MsgUpgradeFailed || r.Event == "committed")
		})
		require.Equal(t, servertest.MsgUpgradeFailed, r.Msg, "%s committed: %s", variant, r.Raw)
		assert.Contains(t, r.Error, "unhealthy during probation", variant)
		assert.Empty(t, servertest.Children(old), "children of %d left after the rollback", old)
		assert.Equal(t, old, s.PID(), "the PID file after the rollback")
		return s.RecordsSince(from)
	}
	// readyAfterAccepting checks that the new generation's ready record
	// comes after its parent's accepting record.
	readyAfterAccepting := func(recs []servertest.Record) {
		t.Helper()
		var accepting, ready string
		for _, r := range recs {
			switch {
			case r.Event == "accepting" && accepting == "":
				accepting = r.Time
			case r.Event == "ready" && r.PID == r.TargetPID && ready == "":
				ready = r.Time
			}
		}
		require.NotEmpty(t, accepting, "no accepting record")
		require.NotEmpty(t, ready, "no ready record of the new generation")
		ta, err := time.Parse(time.RFC3339Nano, accepting)
		require.NoError(t, err)
		tr, err := time.Parse(time.RFC3339Nano, ready)
		require.NoError(t, err)
		assert.False(t, tr.Before(ta), "the older new generation was ready at %s, before its parent paused at %s", ready, accepting)
	}

	// welcome checks where the new generation read its welcome: from the
	// welcome file between two of this release, on the channel otherwise.
	welcome := func(recs []servertest.Record, want string) {
		t.Helper()
		for _, r := range recs {
			if r.Event == "spawned" {
				assert.Equal(t, want, r.Welcome, "welcome of generation %d: %s", r.Gen, r.Raw)
				return
			}
		}
		t.Errorf("no spawned record")
	}

	recs := upgrade("legacy-accept", true) // this release → older
	readyAfterAccepting(recs)
	welcome(recs, "channel")
	welcome(upgrade("", true), "channel")                                   // older → this release
	welcome(upgrade("legacy-accept+probation-unhealthy", false), "channel") // this release → older, rolled back
	welcome(upgrade("legacy-accept", true), "channel")                      // this release → older
	welcome(upgrade("probation-unhealthy", false), "channel")               // older → this release, rolled back
	welcome(upgrade("", true), "channel")                                   // older → this release
	welcome(upgrade("probation-unhealthy", false), "file")                  // this release, rolled back
	welcome(upgrade("", true), "file")                                      // this release

	res := stop()
	t.Log(res.Summary())
	assert.NoError(t, res.Check(load))
	assert.Zero(t, s.Stop(), "exit status")
	assert.Empty(t, servertest.Descendants(s.Bin), "processes left")
}
