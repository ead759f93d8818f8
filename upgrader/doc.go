// Package upgrader replaces a running server process with a new binary
// without refusing, resetting or dropping a connection.
//
// On Upgrade (usually from SIGHUP) the running generation N starts the binary
// at os.Args[0] as generation N+1 and hands it every socket registered with
// Listen, ListenPacket and File, a control channel, and an optional state
// blob. N+1 adopts the sockets (it never binds an inherited address again),
// runs its health check in Ready and starts accepting; N stops accepting
// (paused, not closed) and watches N+1 through a probation window. If N+1
// exits, hangs past UpgradeTimeout, or reports unhealthy before the window
// ends, N resumes accepting and ends N+1: a rollback, reported with its
// reason, after which N can upgrade again. Otherwise N+1 commits: it writes
// the PID file and tells N, whose Exit channel closes; N drains (Drain) and
// exits.
//
// A server using it looks like this:
//
//	upg, err := upgrader.New(upgrader.Options{PIDFile: "/run/app.pid"})
//	...
//	defer upg.Close()
//	ln, err := upg.Listen("tcp", ":8080")
//	srv := &http.Server{Handler: h}
//	listener.ConfigureServer(srv)
//	go srv.Serve(ln)
//	if err := upg.Ready(ctx); err != nil { ... } // Exit is closed
//	go signal.Run(ctx, signal.Actions{Upgrade: upg.Upgrade, Stop: ...})
//	<-upg.Exit()
//	upg.Drain(ctx)
//	srv.Shutdown(ctx)
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
// # Caveats
//
// Upgrades exec os.Args[0]: a binary started with "go run" lives in a
// temporary directory that is gone by then; build it. A new generation that
// hangs before it calls New cannot be told apart from other children of the
// process, so it is killed only when UpgradeTimeout+DrainTimeout have
// passed. Packet sockets (UDP) are shared by both generations during the
// upgrade; stop reading in the old one when Exit is closed. Upgrades are not
// supported on Windows (New returns ErrNotSupported).
package upgrader
