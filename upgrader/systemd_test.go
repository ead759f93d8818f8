//go:build linux

package upgrader_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/handoff-go/handoff/internal/sdnotify"
	"github.com/handoff-go/handoff/internal/sdnotify/sdnotifytest"
	"github.com/handoff-go/handoff/internal/servertest"
	"github.com/handoff-go/handoff/upgrader"
	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// message is what a test expects of one sd_notify datagram: the sender and
// the text, where "<n>" stands for the value of MONOTONIC_USEC= and
// EXTEND_TIMEOUT_USEC= (checked on their own).
type message struct {
	pid  int
	text string
}

// checkSequence compares the messages received with the expected ones.
func checkSequence(t *testing.T, what string, got []sdnotifytest.Message, want []message) {
	t.Helper()
	num := regexp.MustCompile(`(MONOTONIC_USEC|EXTEND_TIMEOUT_USEC)=\d+`)
	ok := len(got) == len(want)
	for i := 0; ok && i < len(got); i++ {
		text := num.ReplaceAllString(got[i].Text, "${1}=<n>")
		if got[i].PID != want[i].pid || text != want[i].text {
			ok = false
		}
		if got[i].Text == "BARRIER=1" {
			assert.Equal(t, 1, got[i].FDs, "%s: fds with BARRIER=1", what)
		}
	}
	var b strings.Builder
	for _, m := range got {
		fmt.Fprintf(&b, "\t%s\n", m)
	}
	if !ok {
		var w strings.Builder
		for _, m := range want {
			fmt.Fprintf(&w, "\tpid %d: %q\n", m.pid, m.text)
		}
		assert.Fail(t, what+": unexpected messages", "got\n%swant\n%s", b.String(), w.String())
		return
	}
	t.Logf("%s: messages\n%s", what, b.String())
}

// waitMessages waits, bounded, until n messages after from arrived.
func waitMessages(t *testing.T, l *sdnotifytest.Listener, from, n int) []sdnotifytest.Message {
	t.Helper()
	ms, ok := l.Wait(from, 60*time.Second, func(ms []sdnotifytest.Message) bool { return len(ms) >= n })
	require.True(t, ok, "%d of %d messages arrived within 60s: %v", len(ms), n, ms)
	return ms
}

// TestNotifySequence (issue 4 a): the exact sd_notify messages, with the
// senders' credentials, for a start, an upgrade, a failed upgrade and a
// stop, received on a real NOTIFY_SOCKET listener that closes barrier fds.
// Only the main process speaks: the new generation says nothing before the
// old one has exited, and a rolled-back one nothing at all.
func TestNotifySequence(t *testing.T) {
	l := sdnotifytest.New(t)
	s := start(t, "-drain-timeout", "10s", "-upgrade-timeout", "20s")
	p1 := s.First

	ms := waitMessages(t, l, 0, 1)
	checkSequence(t, "start", ms, []message{
		{p1, "READY=1\nSTATUS=serving: generation 1, pid " + strconv.Itoa(p1)},
	})

	from := l.Len()
	p2 := s.Upgrade()
	ms = waitMessages(t, l, from, 6)
	extend := strconv.FormatInt((20*time.Second + 10*time.Second).Microseconds(), 10)
	checkSequence(t, "upgrade", ms, []message{
		{p1, "RELOADING=1\nMONOTONIC_USEC=<n>\nEXTEND_TIMEOUT_USEC=<n>\nSTATUS=upgrading: starting generation 2"},
		{p1, fmt.Sprintf("STATUS=upgrading: generation 2 (pid %d) started, initialising", p2)},
		{p1, fmt.Sprintf("STATUS=upgrading: generation 2 (pid %d) accepting, committing", p2)},
		{p1, fmt.Sprintf("READY=1\nSTATUS=generation 2 (pid %d) in charge; generation 1 draining", p2)},
		{p1, "BARRIER=1"},
		{p1, fmt.Sprintf("STATUS=serving: generation 2, pid %d", p2)},
	})
	v, _ := ms[0].Value("EXTEND_TIMEOUT_USEC")
	assert.Equal(t, extend, v, "EXTEND_TIMEOUT_USEC: the upgrade timeout + 10s")

	// A failed upgrade: the new binary fails its health check.
	s.Install("unhealthy")
	from = l.Len()
	mark := s.Mark()
	s.Signal(p2, syscall.SIGHUP)
	r := s.WaitRecord(mark, 60*time.Second, func(r servertest.Record) bool { return r.PID == p2 && r.Msg == servertest.MsgUpgradeFailed })
	p3 := s.WaitRecord(mark, 0, func(r servertest.Record) bool { return r.PID == p2 && r.Event == "spawned" }).TargetPID
	ms = waitMessages(t, l, from, 3)
	checkSequence(t, "failed upgrade", ms, []message{
		{p2, "RELOADING=1\nMONOTONIC_USEC=<n>\nEXTEND_TIMEOUT_USEC=<n>\nSTATUS=upgrading: starting generation 3"},
		{p2, fmt.Sprintf("STATUS=upgrading: generation 3 (pid %d) started, initialising", p3)},
		{p2, fmt.Sprintf("READY=1\nSTATUS=serving: generation 2, pid %d; upgrade to generation 3 failed: %s", p2, r.Error)},
	})

	from = l.Len()
	assert.Zero(t, s.Stop(), "exit status of the stop")
	ms = waitMessages(t, l, from, 2)
	checkSequence(t, "stop", ms, []message{
		{p2, fmt.Sprintf("STOPPING=1\nSTATUS=stopping: generation 2 (pid %d) draining", p2)},
		{p2, "BARRIER=1"},
	})
	// Nothing else, from any process, once every generation is gone.
	require.Empty(t, servertest.Descendants(s.Bin), "processes left")
	assert.Empty(t, l.Since(from+2), "messages after the stop")
	for _, m := range l.Messages() {
		assert.Equal(t, os.Getuid(), m.UID, "the sender's uid: %v", m)
		assert.NotEqual(t, p3, m.PID, "the rolled-back generation spoke: %v", m)
	}
}

// TestNotifyPIDFileHandOver (the main-PID hand-over in notify.go): under
// systemd the PID file names the new generation only from the end of the
// old one's drain. At the commit the old generation rewrites its own pid,
// and while it drains a stream the file still names it and it has not said
// that generation 2 serves; once the drain has finished it writes the
// successor's pid, says STATUS=serving: generation 2, and exits.
func TestNotifyPIDFileHandOver(t *testing.T) {
	l := sdnotifytest.New(t)
	s := start(t, "-drain-timeout", "10s")
	p1 := s.First
	waitMessages(t, l, 0, 1) // READY=1 of the start
	base := servertest.CountSockets(p1)
	stream := upgradertest.Config{Addr: s.Addr, Workers: map[upgradertest.Kind]int{upgradertest.Stream: 1}, StreamTime: 3 * time.Second, MaxRequests: 1}
	stop := upgradertest.Start(t.Context(), stream)
	servertest.WaitSockets(t, p1, base+1)
	from := s.Mark()
	s.Install("")
	s.Signal(p1, syscall.SIGHUP)
	p2 := s.WaitRecord(from, 60*time.Second, func(r servertest.Record) bool {
		return r.PID == p1 && r.Event == "committed" && r.TargetPID != p1
	}).TargetPID
	serving2 := fmt.Sprintf("STATUS=serving: generation 2, pid %d", p2)
	assert.Equal(t, p1, s.PID(), "the PID file after the commit, while the old generation drains")
	for _, m := range l.Messages() {
		assert.NotEqual(t, serving2, m.Text, "said before the end of the drain")
	}
	_, drained := s.FindRecord(from, 0, func(r servertest.Record) bool { return r.PID == p1 && r.Event == "drain-finished" })
	require.False(t, drained, "the drain ended before the checks; log:\n%s", s.LogText(from))

	s.WaitRecord(from, 30*time.Second, func(r servertest.Record) bool { return r.PID == p1 && r.Event == "drain-finished" })
	assert.Zero(t, s.WaitExit(p1, 30*time.Second), "exit status of the old generation")
	assert.Equal(t, p2, s.PID(), "the PID file once the old generation has exited")
	m, ok := l.WaitFor(0, 10*time.Second, serving2)
	if assert.True(t, ok, "no %q; messages: %v", serving2, l.Messages()) {
		assert.Equal(t, p1, m.PID, "the sender of %q", serving2)
	}
	r := stop()
	assert.Zero(t, r.Failed(), "the stream on the old generation: %s", r.FirstFailures(5))
	assert.Equal(t, 1, r.Count(upgradertest.Stream), "streams")
	assert.Zero(t, s.Stop(), "exit status of the stop")
}

// TestNotifyWatchdog (issue 4 a): with WATCHDOG_USEC set, the main process
// pings WATCHDOG=1; after an upgrade the new generation takes over the
// pings once the old one has exited (WATCHDOG_PID named the old one), and
// the old one pinged until then.
func TestNotifyWatchdog(t *testing.T) {
	l := sdnotifytest.New(t)
	t.Setenv("WATCHDOG_USEC", "600000")
	// systemd sets WATCHDOG_PID to the pid it execs: so does this wrapper.
	s, _ := servertest.Start(t, servers, servertest.Options{
		Prefix: []string{"sh", "-c", `WATCHDOG_PID=$$ exec "$0" "$@"`},
		Args:   []string{"-drain-timeout", "10s"},
	})
	p1 := s.First
	pings := func(from int, pid, n int) {
		t.Helper()
		_, ok := l.Wait(from, 60*time.Second, func(ms []sdnotifytest.Message) bool {
			c := 0
			for _, m := range ms {
				if m.PID == pid && m.Text == "WATCHDOG=1" {
					c++
				}
			}
			return c >= n
		})
		require.True(t, ok, "%d WATCHDOG=1 from pid %d did not arrive; messages: %v", n, pid, l.Since(from))
	}
	pings(0, p1, 2)
	from := l.Len()
	p2 := s.Upgrade()
	pings(from, p2, 2)
	from2 := l.Len()
	third := s.Upgrade()
	pings(from2, third, 2)
	assert.Zero(t, s.Stop(), "exit status of the stop")

	// Every message comes from the process that was main then: the
	// datagrams queue in order, so each generation's first message follows
	// the previous generation's last one.
	var seq []string
	last := map[int]int{}
	first := map[int]int{}
	for i, m := range l.Messages() {
		if _, ok := first[m.PID]; !ok {
			first[m.PID] = i
		}
		last[m.PID] = i
		if m.Text == "WATCHDOG=1" {
			if len(seq) == 0 || seq[len(seq)-1] != strconv.Itoa(m.PID) {
				seq = append(seq, strconv.Itoa(m.PID))
			}
		}
		assert.Contains(t, []int{p1, p2, third}, m.PID, "message from another process: %v", m)
	}
	overlap := fmt.Sprintf("generations overlap: gen 1 pid %d messages %d..%d, gen 2 pid %d %d..%d, gen 3 pid %d %d..",
		p1, first[p1], last[p1], p2, first[p2], last[p2], third, first[third])
	assert.Greater(t, first[p2], last[p1], overlap)
	assert.Greater(t, first[third], last[p2], overlap)
	want := []string{strconv.Itoa(p1), strconv.Itoa(p2), strconv.Itoa(third)}
	assert.Equal(t, want, seq, "WATCHDOG=1 senders in order")
	t.Logf("WATCHDOG=1 senders in order: %v", seq)
}

// socketActivate starts the server under systemd-socket-activate with the
// listen arguments, and returns it with the connection that started it.
func socketActivate(t *testing.T, listen []string, network, addr string, args ...string) (*servertest.Server, net.Conn) {
	t.Helper()
	bin, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip("systemd-socket-activate not installed")
	}
	prefix := append([]string{bin}, listen...)
	// It passes on only the variables named with -E.
	prefix = append(prefix, "-E", "NOTIFY_SOCKET")
	return servertest.Start(t, servers, servertest.Options{
		Prefix: prefix,
		Dial: func(s *servertest.Server) net.Conn {
			c, err := net.DialTimeout(network, addr, 10*time.Second)
			require.NoError(t, err)
			return c
		},
		Args: args,
	})
}

// askPending sends a request on the connection that was pending while the
// server started, and returns the answering pid.
func askPending(t *testing.T, c net.Conn) string {
	t.Helper()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET /pid HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
	b, err := io.ReadAll(c)
	require.NoError(t, err, "pending connection")
	_, body, _ := strings.Cut(string(b), "\r\n\r\n")
	return strings.TrimSpace(body)
}

// environ returns pid's environment.
func environ(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	require.NoError(t, err)
	return strings.Split(string(b), "\x00")
}

// TestSocketActivation (issue 4 b): systemd-socket-activate passes a TCP or
// a unix socket; the first generation adopts it (by address, or by name),
// serves the connection that was waiting, and hands it on through an
// upgrade; the new generation never sees LISTEN_*; a stop leaves the unix
// socket file of the activator in place; an unclaimed activated socket is
// reported.
func TestSocketActivation(t *testing.T) {
	l := sdnotifytest.New(t)
	cases := []struct {
		name    string
		network string
		args    func(addr string) []string
	}{
		{"tcp-by-address", "tcp", func(addr string) []string { return []string{"-addr", addr} }},
		{"tcp-by-name", "tcp", func(addr string) []string { return []string{"-activated-name", "web"} }},
		{"unix-by-name", "unix", func(addr string) []string { return []string{"-activated-name", "web"} }},
		{"unix-by-address", "unix", func(addr string) []string { return []string{"-unix", addr} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := filepath.Join(t.TempDir(), "web.sock")
			if tc.network == "tcp" {
				addr = freeAddr(t)
			}
			// A second socket nobody claims.
			spare := freeAddr(t)
			listen := []string{"-l", addr, "--fdname=web:spare", "-l", spare}
			s, pending := socketActivate(t, listen, tc.network, addr, tc.args(addr)...)
			p1 := s.First
			assert.Equal(t, strconv.Itoa(p1), askPending(t, pending), "the connection pending at start was answered by")
			_, ok := s.FindRecord(0, 0, func(r servertest.Record) bool {
				return r.Msg == "upgrader: adopted activated socket" && r.PID == p1
			})
			assert.True(t, ok, "no adopted-socket record:\n%s", s.LogText(0))
			r, ok := s.FindRecord(0, 10*time.Second, func(r servertest.Record) bool { return r.Event == "unused-socket" && r.PID == p1 })
			if assert.True(t, ok, "the unclaimed socket was not reported:\n%s", s.LogText(0)) {
				assert.Contains(t, r.Error, `"spare"`)
			}
			assert.Equal(t, strconv.Itoa(p1), pidOf(t, tc.network, addr), "/pid")

			p2 := s.Upgrade()
			assert.Equal(t, strconv.Itoa(p2), pidOf(t, tc.network, addr), "/pid after the upgrade")
			_, ok = s.FindRecord(0, 0, func(r servertest.Record) bool {
				return r.PID == p2 && (r.Msg == "upgrader: adopted activated socket" || r.Event == "unused-socket")
			})
			assert.False(t, ok, "the new generation read the activation variables again:\n%s", s.LogText(0))
			for _, kv := range environ(t, p2) {
				assert.False(t, strings.HasPrefix(kv, "LISTEN_"), "second generation has %s in its environment", kv)
			}
			p3 := s.Upgrade()
			assert.Equal(t, strconv.Itoa(p3), pidOf(t, tc.network, addr), "/pid after the second upgrade")
			assert.Zero(t, s.Stop(), "exit status of the stop")
			if tc.network == "unix" {
				assert.FileExists(t, addr, "the activated unix socket's file was removed on stop")
			}
		})
	}
	_ = l
}

// TestListenActivatedNotActivated: without socket activation,
// ListenActivated fails with ErrNotActivated, and the server says so.
func TestListenActivatedNotActivated(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(servers.Path(""), "-activated-name", "web", "-log-json")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LISTEN_FDS=", "LISTEN_PID=")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "output:\n%s", out)
	require.Equal(t, 1, ee.ExitCode(), "exit status; output:\n%s", out)
	assert.Contains(t, string(out), upgrader.ErrNotActivated.Error()+`: \"web\"`)
}

// freeAddr returns a loopback TCP address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// TestNotifyReloadSequence (issue 4, Type=notify-reload): systemd ≥ 253
// sends ReloadSignal (SIGHUP) to the main process itself and then needs
// RELOADING=1 with a MONOTONIC_USEC= taken after its signal, followed by
// READY=1, both from the main process; for a rollback too. Checked here on
// the NOTIFY_SOCKET listener, as systemd 252 has no notify-reload.
func TestNotifyReloadSequence(t *testing.T) {
	l := sdnotifytest.New(t)
	s := start(t, "-drain-timeout", "10s", "-upgrade-timeout", "20s")
	reload := func(main int) []sdnotifytest.Message {
		t.Helper()
		var ts unix.Timespec
		require.NoError(t, unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts))
		sent := ts.Nano() / 1000
		from := l.Len()
		s.Signal(main, syscall.SIGHUP) // what ReloadSignal=SIGHUP does
		ms, ok := l.Wait(from, 60*time.Second, func(ms []sdnotifytest.Message) bool {
			for _, m := range ms {
				if m.Has(sdnotify.Ready) {
					return true
				}
			}
			return false
		})
		require.True(t, ok, "no READY=1 after the reload signal: %v", ms)
		require.True(t, ms[0].Has(sdnotify.Reloading), "first message after the signal is not RELOADING=1: %v", ms)
		v, _ := ms[0].Value("MONOTONIC_USEC")
		n, err := strconv.ParseInt(v, 10, 64)
		if assert.NoError(t, err, "MONOTONIC_USEC=%q", v) {
			assert.GreaterOrEqual(t, n, sent, "MONOTONIC_USEC: a time after the signal")
		}
		for _, m := range ms {
			assert.Equal(t, main, m.PID, "a message during the reload from another process than main: %v", m)
		}
		return ms
	}
	waitMessages(t, l, 0, 1) // READY=1 of the start
	ms := reload(s.First)
	t.Logf("reload to a good binary: %v", ms)
	p2 := s.WaitRecord(0, 60*time.Second, func(r servertest.Record) bool {
		return r.PID == s.First && r.Event == "committed" && r.TargetPID != s.First
	}).TargetPID
	require.Zero(t, s.WaitExit(s.First, 60*time.Second), "exit status of the first generation")
	s.Install("unhealthy")
	ms = reload(p2)
	t.Logf("reload to a broken binary: %v", ms)
	assert.Contains(t, ms[len(ms)-1].Text, "upgrade to generation 3 failed", "READY=1 of the rollback says why")
	assert.Zero(t, s.Stop(), "exit status of the stop")
}
