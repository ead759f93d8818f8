package plugin

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("plugin: manager closed")

	// ErrBusy is returned by Swap, Reload, Canary, Promote and Rollback
	// while another of them, a load of Watch or a crash restart is changing
	// the plugin. Nothing is queued: call again.
	ErrBusy = errors.New("plugin: a swap is in progress")

	// ErrChecksum means the binary's sha256 is not in Options.Checksums, or
	// the staged copy no longer matches what was staged.
	ErrChecksum = errors.New("plugin: checksum mismatch")

	// ErrChanged means the binary changed (was rewritten or replaced) while
	// it was being copied to the staging directory. The half-read content is
	// discarded; the next trigger stages the new file.
	ErrChanged = errors.New("plugin: binary changed while being staged")

	// ErrRestarting is returned by Call, with OnCrash set to FailFast, while
	// the plugin process that would answer is being restarted after a crash;
	// with WaitForRestart, when the call's context ends before the restart.
	ErrRestarting = errors.New("plugin: plugin is restarting after a crash")

	// ErrPluginExited wraps the error of a call whose plugin process exited
	// (crashed, or was killed at the drain deadline) while the call was in
	// flight. The manager does not retry such a call: it cannot know whether
	// the plugin acted on it.
	ErrPluginExited = errors.New("plugin: plugin process exited during the call")

	// ErrNoCanary is returned by Promote when no canary is running, and by
	// Canary when Options.Canary.Percent is not set.
	ErrNoCanary = errors.New("plugin: no canary")

	// ErrNoPrevious is returned by Rollback when there is neither a canary
	// to abort nor a previous version to return to.
	ErrNoPrevious = errors.New("plugin: no previous version")
)

// Phase names the step of a load that failed, in a LoadError.
type Phase string

// The steps of loading a plugin version, in order.
const (
	PhaseStage    Phase = "stage"    // copy to the content-addressed path, checksum
	PhaseStart    Phase = "start"    // exec and the go-plugin handshake
	PhaseDispense Phase = "dispense" // connect and dispense the plugin
	PhaseHealth   Phase = "health"   // Options.Health, or go-plugin's Ping
	PhaseSwap     Phase = "swap"     // the manager was closed meanwhile
)

// LoadError reports a plugin version that was refused. The version that was
// serving keeps serving.
type LoadError struct {
	Version string // the id the version would have had
	Path    string // the binary loaded
	SHA256  string // hex; empty if staging failed
	Phase   Phase  // the step that failed
	Err     error  // why; wrapped (errors.Is and errors.As see through)
}

func (e *LoadError) Error() string {
	return fmt.Sprintf("plugin: %s %s refused at %s: %v", e.Version, e.Path, e.Phase, e.Err)
}

func (e *LoadError) Unwrap() error { return e.Err }
