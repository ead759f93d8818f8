//go:build linux

package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-go/handoff/internal/servertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The README's signals, on the real program: under steady traffic, SIGUSR2
// swaps the plugin for the v2 installed at its path (-watch=false, so only
// the signal does), SIGHUP upgrades the host to a new generation that starts
// its own plugin process while the old generation drains and exits with
// its plugin, and SIGTERM drains and stops. No request fails, no plugin
// process is left, and nothing is left in the temporary directory.
func TestSignals(t *testing.T) {
	require.NoError(t, servertest.MakeSubreaper())
	builds, err := servertest.Build("github.com/handoff-go/handoff/examples/pluginhost", false, "")
	require.NoError(t, err)
	t.Cleanup(builds.Remove)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // the hosts' private directories and sockets
	bin := filepath.Join(t.TempDir(), "greeter")
	install(t, "v1", bin)

	s, _ := servertest.Start(t, builds, servertest.Options{Args: []string{"-plugin", bin, "-watch=false"}})
	c := &http.Client{Timeout: 30 * time.Second}
	defer c.CloseIdleConnections()
	url := "http://" + s.Addr + "/?name=Ann"
	a, err := get(c, url)
	require.NoError(t, err)
	require.Equal(t, answer{"Hello, Ann!", "v1", strconv.Itoa(s.First)}, a)
	tr := startTraffic(c, "http://"+s.Addr+"/?name=Bob")

	// SIGUSR2: the plugin at the path is loaded now.
	install(t, "v2", bin)
	s.Signal(s.First, syscall.SIGUSR2)
	a = waitVersion(t, c, url, "v2")
	assert.Equal(t, "Hello, Ann! (greeted by v2)", a.body)
	assert.Equal(t, strconv.Itoa(s.First), a.hostPID, "the same host")
	firstPlugin := onePlugin(t, s.First) // once v1's process has retired

	// SIGHUP: a new generation, with a plugin process of its own, takes
	// over; the old one exits 0 (Upgrade checks) and its plugin with it.
	next := s.Upgrade()
	a, err = get(c, url)
	require.NoError(t, err)
	assert.Equal(t, answer{"Hello, Ann! (greeted by v2)", "v2", strconv.Itoa(next)}, a)
	nextPlugin := onePlugin(t, next)
	assert.NotEqual(t, firstPlugin, nextPlugin)
	gone(t, firstPlugin)

	tr.end(t)
	// SIGTERM: drain and stop; the plugin and the private directory go.
	require.Zero(t, s.Stop(), "exit status")
	gone(t, nextPlugin)
	left, err := os.ReadDir(tmp)
	require.NoError(t, err)
	assert.Empty(t, left, "left in the temporary directory")
}

// onePlugin waits until the host pid has one plugin process (its one
// child) and returns it.
func onePlugin(t *testing.T, pid int) int {
	t.Helper()
	var kids []int
	require.Eventually(t, func() bool {
		kids = kids[:0]
		for child, state := range servertest.Children(pid) {
			if state != "Z" {
				kids = append(kids, child)
			}
		}
		return len(kids) == 1
	}, 30*time.Second, 10*time.Millisecond, "host %d: plugin processes %v", pid, kids)
	return kids[0]
}

// gone waits for pid, a plugin process whose host ended, to exit.
func gone(t *testing.T, pid int) {
	t.Helper()
	if _, err := servertest.WaitPID(pid, 30*time.Second); err != nil {
		var nc *servertest.NotChildError // exited, and reaped by its host
		assert.ErrorAs(t, err, &nc, "plugin %d", pid)
	}
}
