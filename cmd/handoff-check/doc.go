// Command handoff-check upgrades a server under load and fails if a request
// is lost: zero downtime as a test that fails in CI, not a claim. It starts
// the server, puts a load of clients that never retry on it, triggers
// upgrades one after the other, waits for each to complete, stops the
// server, and reports every failed request by class and client, latency
// near upgrades, how long each upgrade took, the server's fds, and any
// process left behind.
//
//	go install github.com/handoff-go/handoff/cmd/handoff-check@latest
//	handoff-check -addr 127.0.0.1:8080 -pidfile /tmp/app.pid -upgrades 20 -json report.json -- \
//		./app -addr 127.0.0.1:8080 -pidfile /tmp/app.pid
//
// It works for any server on the same machine that upgrades itself in
// place (handoff's, tableflip's, overseer's) and, with a restart command,
// for plain stop-and-start, so that a team can measure before it adopts.
// It runs on Linux only: it finds the server's processes, their
// connections and their exits in /proc, the kernel's sock_diag tables and
// pidfds.
//
// # Exit status
//
// 0 when every upgrade completed, at most -budget requests failed (default
// 0) and no process was left behind; 1 otherwise, or if the server did not
// start; 2 for a bad command line. The last line of the text report is the
// verdict, with the reasons in one line:
//
//	handoff-check: PASS: 20 upgrades completed, 41234 requests, 0 failed (budget 0), no process left behind
//	handoff-check: FAIL: 134 failed requests, budget 0 (eof-reused 120, reset 14; clients: keepalive-blind 126, keepalive-checked 8)
//	handoff-check: FAIL: upgrade 1 of 20 did not complete: after 1m0s (-upgrade-timeout): no process other than 4711 answered; the PID file still names 4711
//	handoff-check: FAIL: 1 process(es) left behind 1m0s after the stop (signal SIGTERM to the pid in app.pid): 4790 (worker --queue)
//
// Progress goes to stderr as it runs (-quiet drops it), the text report to
// stdout, the JSON report to the file -json names (-json - puts it on
// stdout and the text on stderr). The server's own output goes to stderr,
// or to -server-log.
//
// # What it does
//
//  1. Starts the server command (everything after --) in a process group
//     of its own, and probes it (-probe: the first -request if it is a GET
//     or HEAD, else GET /) on a new connection every 20 ms until it answers
//     2xx and, with -pidfile, the PID file names a live process
//     (-ready-timeout, 30s). Each -request, -slow and -stream is then sent
//     once: one that does not answer 2xx fails the check before any
//     upgrade.
//  2. Puts the load on it (package upgrader/upgradertest, whose clients
//     never retry: a request the server refuses, resets or drops is
//     counted, never hidden). -clients (12) split in three: keep-alive
//     clients that check whether the server closed an idle connection
//     before they reuse it (as curl does), keep-alive clients that reuse it
//     blindly (as most pools do), and clients that open a new connection
//     per request; they send the -request in turn and together make at most
//     -rate requests per second (1000). -slow adds -slow-clients (2)
//     keep-alive clients of a slow request, so that one is in flight at
//     every upgrade; -stream adds -stream-clients (2) clients of a streamed
//     response, each on a new connection, which must end as its framing
//     says (a chunked body cut short is truncated); -h2c n adds n HTTP/2
//     clients with prior knowledge (8 concurrent streams on a connection)
//     and n whose connection goes idle between bursts. A response is OK
//     when its status is 2xx and its body arrived whole.
//  3. After -warmup (1s) it triggers -upgrades upgrades (20), each once the
//     previous one has completed and -interval (1s) has passed, then runs
//     the load for -warmup more.
//  4. Stops the server: -stop-signal (TERM) to the same process as the
//     upgrade signal, or -stop-cmd; waits up to -stop-timeout (1m) until
//     every process of the server has exited; any process still running is
//     left behind: reported, then killed.
//
// # Triggering an upgrade
//
// By default -signal (HUP) goes to the pid in -pidfile, read at the moment
// of the trigger (or, without -pidfile, to the process that answered the
// last probe). -signal-to main sends it to the process the checker started
// instead, for a master process that stays while its workers change
// (overseer: -signal USR2 -signal-to main). -upgrade-cmd runs a command
// with sh -c instead of any signal: systemctl reload app, a script that
// installs a new build and then signals, or a stop-and-start. The upgrade
// and stop commands get in their environment:
//
//	HANDOFF_CHECK_PID       the process that answered before the trigger
//	HANDOFF_CHECK_MAIN_PID  the process the checker started
//	HANDOFF_CHECK_ADDR      -addr
//	HANDOFF_CHECK_UPGRADE   the upgrade's number, from 1 (0 for -stop-cmd)
//
// A stop-and-start command for a server that has no upgrade of its own:
//
//	-upgrade-cmd 'kill -TERM $HANDOFF_CHECK_PID; while kill -0 $HANDOFF_CHECK_PID 2>/dev/null; do sleep 0.01; done; ./app -addr $HANDOFF_CHECK_ADDR &'
//
// # When an upgrade is complete
//
// The checker knows which process answers: after each probe it looks up,
// in the kernel's socket table, the server's end of the probe's connection
// and finds the process that holds it among its own descendants (it is a
// child subreaper, so every generation a server starts stays its
// descendant) and those of the PID file's process. An upgrade is complete
// when, within -upgrade-timeout (1m) of its trigger, all of these hold:
//
//   - the trigger is done: the signal was sent, or -upgrade-cmd exited
//     with status 0 (another status fails the upgrade at once);
//   - a process other than the one that answered before the trigger has
//     answered a probe (the probe runs every 2 ms until then);
//   - the process that answered before the trigger has exited (a pidfd
//     says when);
//   - with -pidfile, the PID file names a live process other than the one
//     it named before the trigger.
//
// When no process the checker can see holds the server's end (a server of
// another user, or in another network namespace), the second point
// becomes: the PID file names a new live process and the server answers;
// without -pidfile, the command has ended and the server answers. Without
// either the checker refuses to start.
//
// An upgrade that does not complete ends the check: the load goes on for
// -warmup, the server is stopped, and the report says what was missing.
//
// # Measures
//
//   - trigger → new generation serving: from the signal (or the command's
//     start) to the end of the first response of a new process to a probe.
//   - trigger → old generation exited: from the trigger to the exit of the
//     process that answered before it.
//   - old generation's last response → its exit: how long the old process
//     lingered after its last response, to the load or to a probe. The
//     checker looks at the old process's client connections every 5 ms
//     until it exits, and takes the last successful response of the load on
//     one of them; a response on a connection too short to be seen (a new
//     connection per request) is missed, which can only lengthen the
//     figure.
//   - latency: of successful requests (not slow ones, not streams), steady
//     and near upgrades: from a trigger until -near (1s) after the new
//     generation first answered (until the end, if it never did).
//   - fds, non-socket fds, RSS and threads of the serving process after the
//     warm-up, before each trigger and at the end.
//
// # Classes of failure
//
// From upgradertest: refused (the connection was refused), reset (reset,
// or an HTTP/2 stream reset), eof-reused (a reused keep-alive connection
// closed before any byte of the response), eof (a connection ended early
// otherwise), timeout (no complete response within -timeout, 15s), non-2xx,
// truncated (a stream cut short), no-goaway (an HTTP/2 connection ended
// without a GOAWAY under an open stream), other. An HTTP/2 stream the
// server refused unprocessed (REFUSED_STREAM, or above a GOAWAY's last
// stream) is counted apart as unprocessed, not as a failure: a client may
// send it again.
//
// # The JSON report
//
// One object; durations are milliseconds (to the microsecond) unless the
// name ends in _s (seconds, to the millisecond); a figure that does not
// apply is null. A distribution ("dist" below) is an object {n, p50, p99,
// max}: the number of values and their 50th and 99th percentiles and
// maximum, all 0 when n is 0. Fields (a[] is each element of an array, a.*
// each value of an object whose keys are names):
//
//	version                            int     the report's shape, 1: renaming or removing a field changes it, adding one does not
//	passed                             bool    the check passed: exit status 0
//	verdict                            string  the last line of the text report without "handoff-check: ": "PASS: ..." or "FAIL: " and the reasons joined by "; "
//	reasons[]                          string  why the check failed, one sentence each; empty when it passed
//	started                            string  when the check started, RFC 3339, UTC
//	duration_s                         number  how long the check took
//	server_command[]                   string  the server command and its arguments
//	config.addr                        string  -addr
//	config.pidfile                     string  -pidfile, "" if none
//	config.upgrades                    int     -upgrades: the upgrades asked for
//	config.interval_ms                 number  -interval
//	config.trigger                     string  how an upgrade is triggered: "signal SIGHUP to the pid in app.pid", "command: ..."
//	config.stop                        string  how the server is stopped, in the same words
//	config.upgrade_timeout_ms          number  -upgrade-timeout
//	config.budget                      int     -budget: the failed requests allowed
//	config.requests[]                  string  each -request, "METHOD /path"
//	config.probe                       string  the probe's request
//	config.slow                        string  -slow, "" if none
//	config.stream                      string  -stream, "" if none
//	config.workers.*                   int     the clients of each kind (keys as in clients[].kind)
//	config.pause_ms                    number  each client's pause between two requests (from -rate)
//	config.timeout_ms                  number  -timeout: the bound on one request (streams: plus -stream-time)
//	config.near_ms                     number  -near
//	requests.total                     int     requests the load made
//	requests.ok                        int     of them answered 2xx, whole
//	requests.failed                    int     of them failed: the figure -budget bounds
//	requests.failed_near_upgrades      int     of the failed, those started near an upgrade (see Measures)
//	requests.unprocessed               int     HTTP/2 streams refused unprocessed: not failures
//	requests.per_s                     number  requests per second of load
//	requests.failed_by_class.*         int     failed requests by class (keys: the classes above; only classes that occurred)
//	clients[].kind                     string  the kind of client: keepalive-checked, keepalive-blind, new-conn, slow, stream, h2c, h2-idle
//	clients[].workers                  int     clients of this kind
//	clients[].requests                 int     their requests
//	clients[].failed                   int     their failed requests
//	clients[].failed_by_class.*        int     their failed requests by class
//	latency_ms.steady.{n,p50,p99,max}  dist    successful requests not near an upgrade (not slow ones, not streams)
//	latency_ms.near_upgrades.{n,p50,p99,max}  dist  successful requests near an upgrade
//	latency_ms.slow.{n,p50,p99,max}    dist    successful -slow requests
//	upgrades.requested                 int     -upgrades
//	upgrades.completed                 int     upgrades that completed; fewer than requested fails the check
//	upgrades.trigger_to_serving_ms.{n,p50,p99,max}         dist  over the completed upgrades: trigger → new generation serving
//	upgrades.trigger_to_old_exit_ms.{n,p50,p99,max}        dist  trigger → old generation exited
//	upgrades.old_last_response_to_exit_ms.{n,p50,p99,max}  dist  old generation's last response → its exit
//	upgrades.list[].n                  int     the upgrade's number, from 1
//	upgrades.list[].at_s               number  when it was triggered, from the start of the load
//	upgrades.list[].old_pid            int     the process that answered before the trigger
//	upgrades.list[].new_pid            int     the first other process that answered; 0 if none, or unknown
//	upgrades.list[].completed          bool    it completed
//	upgrades.list[].error              string  why it did not complete, "" if it did
//	upgrades.list[].trigger_to_serving_ms           number  or null if no new process answered
//	upgrades.list[].trigger_to_old_exit_ms          number  or null if the old process did not exit
//	upgrades.list[].old_last_response_to_exit_ms    number  or null if the old process did not exit
//	upgrades.list[].command_ms         number  how long -upgrade-cmd ran; null for a signal, or if it did not end
//	upgrades.list[].command_status     int     -upgrade-cmd's exit status (128 + signal if killed); null for a signal, or if it did not end
//	upgrades.list[].probe_errors       int     probes that failed while the checker waited for a new process (a stop-and-start has some)
//	upgrades.list[].failed             int     failed requests started from this trigger to the next one
//	upgrades.list[].old_fds            int     the old process's fds just before the trigger
//	upgrades.list[].old_non_socket_fds int     of them, those that are not sockets
//	processes.fds.{start,end,max}      int     fds of the serving process: after the warm-up, at the end, the most of every sample
//	processes.non_socket_fds.{start,end,max}  int  of them, those that are not sockets (sockets follow the load; these should not grow)
//	processes.rss_kib.{start,end,max}  int     its resident memory, KiB
//	processes.threads.{start,end,max}  int     its threads
//	processes.stop.how                 string  how the server was stopped, as config.stop
//	processes.stop.pid                 int     the process signalled; 0 for -stop-cmd
//	processes.stop.exit_ms             number  from the stop signal to that process's exit; null if it did not exit, or for -stop-cmd
//	processes.stop.exit_status         int     its exit status (128 + signal if killed), if the checker reaped it; else null
//	processes.stop.error               string  what went wrong with the stop, "" if nothing
//	processes.left_behind[].pid        int     a process of the server (a descendant of the checker, or a pid seen serving) still running -stop-timeout after the stop; it was then killed
//	processes.left_behind[].command    string  its command line
//	processes.serving_pids[]           int     the processes seen serving, in order
//	first_failures[].at_s              number  when the request started, from the start of the load (the first 20 failed requests)
//	first_failures[].upgrade           int     the last upgrade triggered before it, 0 if none
//	first_failures[].since_trigger_ms  number  from that upgrade's trigger to the request's start; 0 if none
//	first_failures[].client            string  the kind of client
//	first_failures[].class             string  the class of failure
//	first_failures[].op                string  request, slow or stream
//	first_failures[].latency_ms        number  how long the request took to fail
//	first_failures[].error             string  the error the client saw
package main
