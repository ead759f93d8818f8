package upgrader

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors. An upgrade that did not commit returns an *UpgradeError
// whose Err wraps one of ErrSpawn, ErrExited, ErrTimeout, ErrUnhealthy,
// ErrStopped or ErrCanceled; a refused call returns ErrInProgress, ErrNotReady,
// ErrStateTooLarge or ErrStopped directly.
var (
	// ErrInProgress is returned by Upgrade while another upgrade runs.
	ErrInProgress = errors.New("upgrader: upgrade in progress")
	// ErrNotReady is returned by Upgrade before Ready has succeeded.
	ErrNotReady = errors.New("upgrader: not ready yet")
	// ErrStopped is returned once Stop was called, or when Stop interrupts
	// an upgrade.
	ErrStopped = errors.New("upgrader: stopped")
	// ErrUpgraded is returned by Upgrade once a new generation has taken
	// over from this one.
	ErrUpgraded = errors.New("upgrader: already upgraded")
	// ErrSpawn means the new binary could not be started (missing at
	// os.Args[0], not executable), or the engine refused to start it.
	ErrSpawn = errors.New("upgrader: cannot start the new generation")
	// ErrExited means the new generation exited before it committed.
	ErrExited = errors.New("upgrader: new generation exited")
	// ErrTimeout means the new generation did not commit within
	// Options.UpgradeTimeout.
	ErrTimeout = errors.New("upgrader: new generation timed out")
	// ErrUnhealthy means a health check of the new generation failed, at
	// start or during probation.
	ErrUnhealthy = errors.New("upgrader: new generation unhealthy")
	// ErrCanceled means the context passed to Upgrade ended first.
	ErrCanceled = errors.New("upgrader: upgrade canceled")
	// ErrStateTooLarge is returned by Upgrade, before anything is started,
	// when Options.SaveState returns more than Options.MaxStateSize bytes.
	ErrStateTooLarge = errors.New("upgrader: state blob too large")
	// ErrRolledBack is returned by Ready in a new generation that its
	// parent rolled back; the process should drain and exit.
	ErrRolledBack = errors.New("upgrader: rolled back by the previous generation")
	// ErrMalformedEnvironment is returned by New when the process looks
	// like an upgrade (the hand-over variables are set) but what it
	// inherited is unusable.
	ErrMalformedEnvironment = errors.New("upgrader: malformed inherited environment")
	// ErrNotSupported is returned by New on platforms without fd passing.
	ErrNotSupported = errors.New("upgrader: platform does not support upgrades")
)

// UpgradeError says why an upgrade did not commit. The previous generation
// (the caller's process) keeps serving after any UpgradeError.
type UpgradeError struct {
	// Generation is the number the new generation would have had.
	Generation int
	// PID of the new process, 0 if it never reported itself.
	PID int
	// Phase the upgrade was in: "spawn", "init", "probation" or "commit".
	Phase string
	// ExitCode of the new process when Err wraps ErrExited and it exited
	// normally; -1 when it was killed by a signal or is unknown.
	ExitCode int
	// Status is the new process's exit status as the OS reported it
	// ("exit status 3", "signal: killed"), if it exited.
	Status string
	// Err wraps one of the sentinels and the detail.
	Err error
}

func (e *UpgradeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "upgrade to generation %d failed in %s", e.Generation, e.Phase)
	if e.PID != 0 {
		fmt.Fprintf(&b, " (pid %d)", e.PID)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	if e.Status != "" && !strings.Contains(e.Err.Error(), e.Status) {
		b.WriteString(" (" + e.Status + ")")
	}
	return b.String()
}

// Unwrap returns Err.
func (e *UpgradeError) Unwrap() error { return e.Err }

// exitStatus extracts the exit status from tableflip's error text, which
// formats the child's *exec.ExitError with %s ("child pid=7 exited: exit
// status 3"), so only the text survives.
func exitStatus(msg string) (status string, code int) {
	const marker = "exited"
	i := strings.LastIndex(msg, marker)
	if i < 0 {
		return "", -1
	}
	rest := strings.TrimSpace(strings.TrimPrefix(msg[i+len(marker):], ":"))
	if rest == "" {
		return "exit status 0", 0
	}
	if s, ok := strings.CutPrefix(rest, "exit status "); ok {
		if n, err := strconv.Atoi(s); err == nil {
			return rest, n
		}
	}
	return rest, -1
}
