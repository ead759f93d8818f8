package upgrader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		msg    string
		status string
		code   int
	}{
		{"child pid=7 exited: exit status 3", "exit status 3", 3},
		{"child pid=7 exited", "exit status 0", 0},
		{"child pid=7 exited: signal: killed", "signal: killed", -1},
		{"can't start child: fork/exec: no such file", "", -1},
	} {
		status, code := exitStatus(tc.msg)
		assert.Equal(t, tc.status, status, tc.msg)
		assert.Equal(t, tc.code, code, tc.msg)
	}
}

// classifyTF reads tableflip's texts; "parent hasn't exited" must never
// read as an exit. TestTableflipContract drives the real failures.
func TestClassifyTF(t *testing.T) {
	for msg, want := range map[string]tfKind{
		"child pid=9 exited: exit status 3":             tfExited,
		"child pid=9 exited":                            tfExited,
		"new child pid=9 timed out":                     tfTimedOut,
		"terminating":                                   tfTerminating,
		"can't start child: fork/exec /x: no such file": tfCannotStart,
		"parent hasn't exited":                          tfParentAlive,
		"already upgraded":                              tfUpgraded,
		"upgrade in progress":                           tfBusy,
		"process is not ready yet":                      tfNotReady,
		"something else":                                tfOther,
	} {
		e := classifyTF(errors.New(msg))
		require.NotNil(t, e, msg)
		assert.Equal(t, want, e.kind, msg)
	}
	assert.Nil(t, classifyTF(nil))
}

func TestUpgradeErrorText(t *testing.T) {
	e := &UpgradeError{Generation: 3, PID: 42, Phase: PhaseProbation, ExitCode: 2, Status: "exit status 2", Err: fmt.Errorf("%w with exit status 2", ErrExited)}
	got := e.Error()
	for _, want := range []string{"generation 3", "probation", "pid 42", "exit status 2"} {
		assert.Contains(t, got, want)
	}
	assert.ErrorIs(t, e, ErrExited)
}

// The PID file's transitions: claim, hand over, reclaim, release.
func TestPIDFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.pid")
	read := func() string {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		return string(b)
	}
	self := strconv.Itoa(os.Getpid())
	p := pidFile{path: path}
	require.NoError(t, p.claim())
	assert.Equal(t, self+"\n", read())
	require.NoError(t, p.handOver(123))
	assert.Equal(t, "123\n", read())
	require.NoError(t, p.reclaim())
	assert.Equal(t, self+"\n", read())
	require.NoError(t, p.reclaim(), "reclaiming a file that names us already")
	ents, _ := os.ReadDir(filepath.Dir(path))
	assert.Len(t, ents, 1, "temporary files left")

	require.NoError(t, p.handOver(123))
	p.release() // names another process: kept
	assert.Equal(t, "123\n", read())
	require.NoError(t, p.claim())
	p.release()
	_, err := os.Stat(path)
	assert.True(t, os.IsNotExist(err), "PID file not removed: %v", err)

	bad := pidFile{path: filepath.Join(t.TempDir(), "missing", "app.pid")}
	err = bad.claim()
	assert.ErrorIs(t, err, ErrPIDFile)
	assert.Contains(t, err.Error(), "missing/app.pid")

	var none pidFile
	assert.NoError(t, none.claim(), "no PID file: a no-op")
}

func TestOptionsValidation(t *testing.T) {
	_, err := newUpgrader(Options{Probation: 2 * DefaultUpgradeTimeout})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Probation")
}
