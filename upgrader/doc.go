// Package upgrader replaces a running server process with a new binary
// without refusing, resetting or dropping a connection.
//
// On Upgrade (usually from SIGHUP) the running generation N starts the binary
// at os.Args[0] as generation N+1 and hands it every socket registered with
// Listen, ListenActivated, ListenPacket and File, a control channel, and an
// optional state blob. N+1 adopts the sockets (it never binds an inherited
// address again), runs its health check in Ready and starts accepting; N,
// told so, stops accepting (paused, not closed) and watches N+1 through a
// probation window. If N+1 exits, hangs past UpgradeTimeout, reports
// unhealthy or is stopped before the window ends, N resumes accepting and
// ends N+1: a rollback, reported with its reason, after which N can upgrade
// again. Otherwise N commits: it hands the PID file over and tells N+1, whose
// Ready returns; N's Exit channel closes, N drains (Drain) and exits. Until
// its drain ends N watches N+1, and takes charge again if N+1 dies.
//
// Most programs should not compose this by hand: the root package's
// handoff.Run (and ListenAndServe) serves http.Servers and gRPC servers on an
// Upgrader with the signals, the drain order and every sequence of a
// deployment handled. This package is for the programs that need the parts.
//
// # Composing it by hand
//
// The order matters; each step below is there because a deployment can send
// signals at any moment:
//
//	upg, err := upgrader.New(upgrader.Options{PIDFile: "/run/app.pid"})
//	...
//	defer upg.Close()
//	ln, err := upg.Listen("tcp", ":8080") // adopted on an upgrade
//	srv := &http.Server{Handler: h}
//	listener.ConfigureServer(srv)     // Connection: close while draining
//	go srv.Serve(ln)
//	// Subscribe to signals before Ready (Start returns once they are):
//	// from Ready on this process accepts, and a SIGHUP or SIGTERM must not
//	// meet Go's default action. Stop must return only once the drain is
//	// over, or a second signal during the drain would find no handler.
//	wait, err := signal.Start(ctx, signal.Actions{Upgrade: upg.Upgrade, Stop: stopAndWaitForDrain}, ...)
//	if err := upg.Ready(ctx); err != nil { ... } // Exit is closed: drain
//	for {
//		<-upg.Exit()
//		if _, err := upg.Drain(ctx); errors.Is(err, upgrader.ErrReclaimed) {
//			continue // the successor died: this generation serves on
//		}
//		break
//	}
//	srv.Shutdown(ctx) // GOAWAY to HTTP/2 connections; nothing else is left
//
// The package's Example is this program in full.
//
// # Ownership and the one-way commit
//
// One goroutine owns the state of a generation; the methods send it
// requests. Upgrade calls never overlap: a call made during an upgrade joins
// the one follow-up that runs after it, on the newest binary, by whichever
// generation is in charge when it ends (the old one after a rollback; after a
// commit the old one forwards the request and the new one carries it out
// once the old one has exited). The commit is one-way: once N has sent it,
// no cancellation, Stop or timeout rolls back. A Stop before it rolls the
// upgrade back (the new process is ended, gracefully if it serves) and stops
// N; a Stop after it ends N only, which was draining anyway.
//
// A new generation takes charge only when its parent is known to be gone
// (tableflip's pipe from the parent reached EOF): then nothing else serves.
//
// # Connections handed over
//
// Once N+1 has committed, N does not end its idle keep-alive connections:
// Drain hands each HTTP/1 connection that waits for its next request (and
// each raw one its server declared listener.Idle) to N+1, which adopts it
// into its listener of the same address and serves it as if it had just
// accepted it; the client sees nothing. The sockets travel on a second
// channel beside the control channel, a unix socket of type SOCK_SEQPACKET
// carrying up to 253 descriptors per message (SCM_RIGHTS), whose peer
// credentials are checked the same way. Both generations must agree in
// the hand-shake: an older binary, or one with Options.NoHandOver, does
// not, and connections then drain as before. TLS and HTTP/2 connections,
// hijacked ones and those in the middle of a request always drain (see
// listener.Listener.HandOver for why). If N+1 dies or stops during the
// drain, the hand-over ends and the rest drains in N. On Linux only.
//
// # The process is the unit
//
// One Upgrader exists per process (New fails the second time): the sockets,
// the pid and the parent are the process's. Tests that need many generations
// run real child processes.
//
// The engine underneath is github.com/cloudflare/tableflip; none of its types
// appear in this API. The control channel is a unix socket (abstract on
// Linux) whose peer credentials are checked: only a child of this process, as
// the same user, can speak for the new generation.
//
// # systemd
//
// Under NOTIFY_SOCKET the generation that is systemd's main process sends
// READY=1, RELOADING=1 with MONOTONIC_USEC around each upgrade, STATUS=
// lines, STOPPING=1 and watchdog pings. The main PID moves through the PID
// file, never MAINPID=; see notify.go for why and examples/systemd for the
// units. Sockets passed by socket activation are adopted by address (Listen)
// or by name (ListenActivated).
//
// # Caveats
//
// Upgrades exec os.Args[0]: a binary started with "go run" lives in a
// temporary directory that is gone by then; build it. A new binary that never
// calls New is found in /proc and killed at UpgradeTimeout on Linux;
// elsewhere tableflip's own timeout (UpgradeTimeout+DrainTimeout+1s) kills
// it. Packet sockets (UDP) are shared by both generations during the
// upgrade; stop reading in the old one when Exit is closed. A generation
// that took charge again after its successor died cannot start another one
// (tableflip has handed over): it serves until it is restarted. Upgrades are
// not supported on Windows (New returns ErrNotSupported).
package upgrader
