package upgrader

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		if status != tc.status || code != tc.code {
			t.Errorf("exitStatus(%q) = %q, %d; want %q, %d", tc.msg, status, code, tc.status, tc.code)
		}
	}
}

// tableflip's error texts map to our sentinels; "parent hasn't exited"
// must never read as an exit.
func TestTableflipErrors(t *testing.T) {
	a := &attempt{u: &Upgrader{opts: Options{}.withDefaults()}, gen: 2, phase: "spawn"}
	for msg, want := range map[string]error{
		"child pid=9 exited: exit status 3":             ErrExited,
		"child pid=9 exited":                            ErrExited,
		"new child pid=9 timed out":                     ErrTimeout,
		"terminating":                                   ErrStopped,
		"can't start child: fork/exec /x: no such file": ErrSpawn,
		"parent hasn't exited":                          ErrSpawn,
	} {
		if err := a.exited(errors.New(msg)); !errors.Is(err, want) {
			t.Errorf("%q -> %v, want %v", msg, err, want)
		}
	}
}

func TestUpgradeErrorText(t *testing.T) {
	e := &UpgradeError{Generation: 3, PID: 42, Phase: "probation", ExitCode: 2, Status: "exit status 2", Err: ErrExited}
	if got := e.Error(); !strings.Contains(got, "generation 3") || !strings.Contains(got, "probation") || !strings.Contains(got, "pid 42") || !strings.Contains(got, "exit status 2") {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(e, ErrExited) {
		t.Error("errors.Is(ErrExited) is false")
	}
}

func TestPIDFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.pid")
	if err := writePIDFile(path, 123); err != nil {
		t.Fatal(err)
	}
	if err := writePIDFile(path, 456); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "456\n" {
		t.Fatalf("PID file %q, %v", b, err)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	removePIDFile(path, 123) // not ours: kept
	if _, err := os.Stat(path); err != nil {
		t.Errorf("removed a PID file naming another pid: %v", err)
	}
	removePIDFile(path, 456)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("PID file not removed: %v", err)
	}
	if err := writePIDFile(filepath.Join(t.TempDir(), "missing", "app.pid"), 1); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

func TestOptionsValidation(t *testing.T) {
	if _, err := newUpgrader(Options{Probation: 2 * DefaultUpgradeTimeout}); err == nil || !strings.Contains(err.Error(), "Probation") {
		t.Errorf("a probation longer than the timeout: %v", err)
	}
}
