package upgrader

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. An upgrade that did not commit returns an *UpgradeError
// whose Err wraps one of ErrSpawn, ErrExited, ErrTimeout, ErrUnhealthy,
// ErrPIDFile, ErrStopped or ErrCanceled; a refused call returns
// ErrStateTooLarge, ErrStopped, ErrRolledBack or ErrUpgraded directly.
var (
	// ErrStopped is returned once Stop was called, when Stop interrupts an
	// upgrade, and (wrapped in an *UpgradeError) when the new generation
	// was stopped before it committed.
	ErrStopped = errors.New("upgrader: stopped")
	// ErrUpgraded is returned by Upgrade in a generation that handed over
	// and whose successor can no longer take the request (it exited or is
	// stopping), and in a generation that took charge again after its
	// successor died (see ErrReclaimed).
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
	// start or during probation, or it broke the control protocol.
	ErrUnhealthy = errors.New("upgrader: new generation unhealthy")
	// ErrCanceled means the context passed to Upgrade ended first.
	ErrCanceled = errors.New("upgrader: upgrade canceled")
	// ErrPIDFile means Options.PIDFile could not be written; the error
	// names the file and the cause. At a commit it is a rollback.
	ErrPIDFile = errors.New("upgrader: cannot write the PID file")
	// ErrStateTooLarge is returned by Upgrade, before anything is started,
	// when Options.SaveState returns more than Options.MaxStateSize bytes.
	ErrStateTooLarge = errors.New("upgrader: state blob too large")
	// ErrRolledBack is returned by Ready in a new generation that its
	// parent rolled back, or that gave up on its own before the commit;
	// the process should drain and exit.
	ErrRolledBack = errors.New("upgrader: rolled back")
	// ErrReclaimed is returned by Drain when the successor this generation
	// handed over to died before the drain ended: this generation took
	// charge again and serves on. Wait for Exit again. Such a generation
	// cannot start another one (its engine has handed over once):
	// Upgrade then returns ErrUpgraded, and the service must be
	// restarted to run a new binary.
	ErrReclaimed = errors.New("upgrader: successor died; this generation took charge again")
	// ErrMalformedEnvironment is returned by New when the process looks
	// like an upgrade (the hand-over variables are set) but what it
	// inherited is unusable.
	ErrMalformedEnvironment = errors.New("upgrader: malformed inherited environment")
	// ErrNotSupported is returned by New on platforms without fd passing.
	ErrNotSupported = errors.New("upgrader: platform does not support upgrades")
)

// Phase is the phase an upgrade was in when it failed.
type Phase int

// The phases of an upgrade, as the old generation sees them.
const (
	// PhaseSpawn: from the trigger until the new process introduced itself.
	PhaseSpawn Phase = iota + 1
	// PhaseInit: the new process runs New, its listeners and its first
	// health check; it does not accept yet.
	PhaseInit
	// PhaseProbation: the new generation accepts; the old one is paused
	// and watches it.
	PhaseProbation
	// PhaseCommit: the probation passed and the old generation commits.
	PhaseCommit
)

func (p Phase) String() string {
	switch p {
	case PhaseSpawn:
		return "spawn"
	case PhaseInit:
		return "init"
	case PhaseProbation:
		return "probation"
	case PhaseCommit:
		return "commit"
	}
	return "unknown"
}

// UpgradeError says why an upgrade did not commit. The previous generation
// (the caller's process) keeps serving after any UpgradeError, and nothing the
// upgrade started is left running.
type UpgradeError struct {
	// Generation is the number the new generation would have had.
	Generation int
	// PID of the new process, 0 if it never reported itself.
	PID int
	// Phase the upgrade was in.
	Phase Phase
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
	b.WriteString(e.Err.Error()) // an exit's Err says its Status
	return b.String()
}

// Unwrap returns Err.
func (e *UpgradeError) Unwrap() error { return e.Err }
