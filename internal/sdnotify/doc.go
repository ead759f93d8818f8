// Package sdnotify speaks the sd_notify protocol to the service manager:
// state messages (READY=1, RELOADING=1, STOPPING=1, STATUS=, WATCHDOG=1,
// EXTEND_TIMEOUT_USEC=), the notification barrier, and the watchdog
// interval.
//
// Everything is a no-op when NOTIFY_SOCKET is unset: Send and Barrier then
// return (false, nil), which is not an error. Messages go through
// github.com/coreos/go-systemd/v22/daemon; the barrier, which that package
// lacks, is built here on golang.org/x/sys/unix: a BARRIER=1 datagram carries
// the write end of a pipe, and the service manager closes it once it has
// processed every message sent before, which the sender sees as POLLHUP on
// the read end.
//
// NOTIFY_SOCKET is never unset here: a process that hands its work to a new
// process (a binary upgrade) passes it on, so that the new process can speak
// to the service manager once it is the main process.
//
// The watchdog: WatchdogInterval reads WATCHDOG_USEC and WATCHDOG_PID, and
// takes the pid that WATCHDOG_PID must name, because a new process started by
// the old main process inherits the old main's WATCHDOG_PID.
//
// The barrier is supported on Linux only (systemd is); elsewhere Barrier returns
// ErrNotSupported when NOTIFY_SOCKET is set.
package sdnotify
