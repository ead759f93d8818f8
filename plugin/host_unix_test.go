//go:build unix

package plugin

import (
	"testing"

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
