package sdnotify

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// The assignments a message is made of.
const (
	Ready     = daemon.SdNotifyReady     // READY=1
	Reloading = daemon.SdNotifyReloading // RELOADING=1
	Stopping  = daemon.SdNotifyStopping  // STOPPING=1
	Watchdog  = daemon.SdNotifyWatchdog  // WATCHDOG=1
	barrier   = "BARRIER=1"
)

var (
	// ErrBarrierTimeout: the service manager did not close the barrier's
	// pipe in time.
	ErrBarrierTimeout = errors.New("sdnotify: barrier timed out")
	// ErrNotSupported: the barrier needs Linux.
	ErrNotSupported = errors.New("sdnotify: barrier not supported on this system")
)

// Enabled reports whether NOTIFY_SOCKET is set, that is, whether Send and
// Barrier talk to a service manager.
func Enabled() bool { return os.Getenv("NOTIFY_SOCKET") != "" }

// Send sends one datagram made of the assignments, joined by newlines, to
// the socket named by NOTIFY_SOCKET. It returns (false, nil) when
// NOTIFY_SOCKET is unset, (true, nil) once the datagram is sent. Safe for
// concurrent use; each call is one datagram.
func Send(assignments ...string) (bool, error) {
	if !Enabled() {
		return false, nil
	}
	ok, err := daemon.SdNotify(false, strings.Join(assignments, "\n"))
	if err != nil {
		return ok, fmt.Errorf("sdnotify: %w", err)
	}
	return ok, nil
}

// Status returns a STATUS= assignment for text, with newlines (which would
// end the assignment) replaced by spaces.
func Status(text string) string {
	return "STATUS=" + strings.ReplaceAll(text, "\n", " ")
}

// MonotonicUsec returns a MONOTONIC_USEC= assignment for now, the companion
// of RELOADING=1; "" if the monotonic clock is unavailable.
func MonotonicUsec() string {
	return strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n")
}

// ExtendTimeout returns an EXTEND_TIMEOUT_USEC= assignment: the service
// manager lets the current phase (start, reload, stop) run d longer,
// counted from the moment it receives the message.
func ExtendTimeout(d time.Duration) string {
	return "EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(d.Microseconds(), 10)
}

// Barrier sends BARRIER=1 with the write end of a pipe and waits until the
// service manager closes it, which it does after it has processed every
// message this process sent before; or until timeout. It returns (false,
// nil) when NOTIFY_SOCKET is unset, an error wrapping ErrBarrierTimeout
// when the manager did not answer in time (a manager older than systemd
// 246 never does). It blocks for at most timeout.
func Barrier(timeout time.Duration) (bool, error) {
	if !Enabled() {
		return false, nil
	}
	return barrierUnix(os.Getenv("NOTIFY_SOCKET"), timeout)
}

// WatchdogInterval returns the watchdog interval set by the service manager
// (WATCHDOG_USEC) if it applies to pid: WATCHDOG_PID is unset or names pid.
// Ping (send Watchdog) at half of it. It returns (0, nil) when the watchdog
// is off or meant for another process, and an error for a malformed value.
//
// A process started by the old main process to replace it inherits the old
// main's WATCHDOG_PID: it should pass the pid of the process that was main
// (its parent), and, once it is main itself, set WATCHDOG_PID to its own pid
// for the process it starts in turn.
func WatchdogInterval(pid int) (time.Duration, error) {
	usec := os.Getenv("WATCHDOG_USEC")
	if usec == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(usec, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("sdnotify: malformed WATCHDOG_USEC=%q", usec)
	}
	if wpid := os.Getenv("WATCHDOG_PID"); wpid != "" {
		p, err := strconv.Atoi(wpid)
		if err != nil || p <= 0 {
			return 0, fmt.Errorf("sdnotify: malformed WATCHDOG_PID=%q", wpid)
		}
		if p != pid {
			return 0, nil
		}
	}
	return time.Duration(n) * time.Microsecond, nil
}
