package upgrader

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/cloudflare/tableflip"
)

// The engine underneath: github.com/cloudflare/tableflip execs the new binary
// with the registered fds and tells the parent when the child called its
// Ready (or exited, or timed out). tableflip formats every error with %s, so
// only their text is left to go by; this file is the one place that reads
// it, and TestTableflipContract drives real tableflip failures through it.

// sentinelEnv is the variable tableflip sets in a process it starts; with it
// set, fds 3 and 4 must be the pipes to the parent.
const sentinelEnv = "TABLEFLIP_HAS_PARENT_7DIU3"

// tfKind classifies an error from tableflip's Upgrade.
type tfKind int

const (
	tfOther       tfKind = iota // anything else: the text is the detail
	tfExited                    // the child exited before it was ready
	tfTimedOut                  // tableflip's own timeout killed the child
	tfTerminating               // tableflip's Stop interrupted the upgrade (and killed the child)
	tfCannotStart               // the child could not be started
	tfParentAlive               // refused: this process's own parent has not exited yet
	tfUpgraded                  // refused: this process already handed over
	tfBusy                      // refused: another upgrade runs
	tfNotReady                  // refused: Ready was not called
)

// tfError is tableflip's error, classified.
type tfError struct {
	kind   tfKind
	status string // tfExited: "exit status 3", "signal: killed"
	code   int    // tfExited: the exit code, -1 for a signal
	err    error  // tableflip's error
}

func (e *tfError) Error() string { return e.err.Error() }
func (e *tfError) Unwrap() error { return e.err }

// classifyTF maps an error from tableflip's Upgrade to a *tfError; nil stays
// nil.
func classifyTF(err error) *tfError {
	if err == nil {
		return nil
	}
	msg := err.Error()
	e := &tfError{kind: tfOther, code: -1, err: err}
	switch {
	case msg == "parent hasn't exited":
		e.kind = tfParentAlive
	case msg == "already upgraded":
		e.kind = tfUpgraded
	case msg == "upgrade in progress":
		e.kind = tfBusy
	case msg == "terminating":
		e.kind = tfTerminating
	case msg == "process is not ready yet":
		e.kind = tfNotReady
	case strings.HasPrefix(msg, "can't start child"):
		e.kind = tfCannotStart
	case strings.HasPrefix(msg, "new child ") && strings.HasSuffix(msg, " timed out"):
		e.kind = tfTimedOut
	case strings.HasPrefix(msg, "child ") && strings.Contains(msg, " exited"):
		e.kind = tfExited
		e.status, e.code = exitStatus(msg)
	}
	return e
}

// exitStatus extracts the exit status from tableflip's text for a child that
// exited ("child pid=7 exited: exit status 3"; "child pid=7 exited" for
// status 0).
func exitStatus(msg string) (status string, code int) {
	const marker = " exited"
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

// tfUpgrade calls tableflip's Upgrade. tableflip's state machine records
// its own Ready, and its parent's exit, a moment after they happened (it
// reports the exit to WaitForParent first), and refuses an upgrade in
// between without starting anything: "process is not ready yet", "parent
// hasn't exited". Those refusals are retried, bounded. There is no event for
// tableflip's state machine catching up, so the retry sleeps.
func tfUpgrade(tf *tableflip.Upgrader) *tfError {
	for i := 0; ; i++ {
		e := classifyTF(tf.Upgrade())
		if e == nil || e.kind != tfParentAlive && e.kind != tfNotReady || i == 200 {
			return e
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// errTFNotSupported reports whether err is tableflip's ErrNotSupported.
func errTFNotSupported(err error) bool { return errors.Is(err, tableflip.ErrNotSupported) }
