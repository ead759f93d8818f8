//go:build unix

package plugin

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/handoff-go/handoff/internal/proc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Acceptance c, second half, and the reclaim of private directories: a host
// killed with SIGKILL takes its plugin with it (Linux's parent-death signal;
// elsewhere the test ends the plugin) and leaves its private directory
// behind; the next New removes that directory, and leaves a live host's
// alone.
func TestHostKilled(t *testing.T) {
	dead := startHost(t, bins["v1"])
	live := startHost(t, bins["v1"])
	if ppid, err := proc.ParentPID(dead.pluginPID); err == nil {
		require.Equal(t, dead.cmd.Process.Pid, ppid, "the plugin's parent")
	}
	dead.kill(t)
	pluginGone(t, dead.pluginPID)
	require.DirExists(t, dead.dir, "a killed host leaves its private directory")
	require.FileExists(t, dead.dir+"/"+lockName)

	ev := newEvents()
	opts := baseOptions(t, bins["v1"])
	opts.OnEvent = ev.on
	newManager(t, opts)
	assert.NoDirExists(t, dead.dir, "New reclaims the dead host's directory")
	assert.DirExists(t, live.dir, "New keeps the live host's directory")
	var reclaimed []Event
	for _, e := range ev.list() {
		if e.Kind == EventReclaimed {
			reclaimed = append(reclaimed, e)
		}
	}
	require.Len(t, reclaimed, 1)
	assert.Equal(t, dead.dir, reclaimed[0].Path)
	assert.NoError(t, reclaimed[0].Err)

	live.stop(t)
	assert.NoDirExists(t, live.dir, "a host's Close removes its directory")
}

// host is a plugin host process started by startHost.
type host struct {
	cmd       *exec.Cmd
	stdin     io.Closer
	pluginPID int
	dir       string // its Manager's private directory
}

// startHost runs the test binary as a plugin host serving bin, and returns
// once its plugin serves. The host is killed at the end of the test if it
// still runs.
func startHost(t *testing.T, bin string) *host {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=host", hostBin+"="+bin)
	cmd.Stderr = tWriter{t}
	stdin, err := cmd.StdinPipe() // held open: the host serves until it closes
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	h := &host{cmd: cmd, stdin: stdin}
	t.Cleanup(func() { h.stop(t) })
	line := readLine(t, out)
	_, err = fmt.Sscanf(line, "%d %s", &h.pluginPID, &h.dir)
	require.NoError(t, err, "the host said %q", line)
	require.NotZero(t, h.pluginPID)
	return h
}

// stop ends the host as a deploy would (it closes its Manager) and waits
// for it; a host still running after 30 s is killed. Stopping a host that
// has exited already does nothing.
func (h *host) stop(t *testing.T) {
	t.Helper()
	if h.cmd.ProcessState != nil {
		return
	}
	_ = h.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- h.cmd.Wait() }()
	select {
	case err := <-done:
		assert.NoError(t, err, "the host's exit")
	case <-time.After(30 * time.Second):
		_ = h.cmd.Process.Kill()
		<-done
		t.Error("the host did not exit within 30s of its stdin closing")
	}
}

// kill kills the host with SIGKILL (TerminateProcess on Windows), as an OOM
// killer or a crash would end it, and waits for it.
func (h *host) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, h.cmd.Process.Kill())
	_ = h.cmd.Wait()
}

// readLine reads one line from r with a deadline.
func readLine(t testing.TB, r io.Reader) string {
	t.Helper()
	ch := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		ch <- line
	}()
	select {
	case l := <-ch:
		return strings.TrimSpace(l)
	case <-time.After(30 * time.Second):
		require.FailNow(t, "no line within 30s")
		return ""
	}
}
