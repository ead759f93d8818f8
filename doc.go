// Package handoff is a library for zero-downtime deployments inside a Go
// service. This root package holds no code: it documents the model and points
// to the packages that implement it.
//
// # The model
//
// A running process is generation N. On SIGHUP (or a call, or systemctl
// reload) it starts the new binary as generation N+1 and hands it every
// listening socket. N+1 adopts them, proves itself healthy and starts
// accepting while N pauses; after an optional probation window N+1 commits
// and N drains its in-flight requests and exits. A new binary that exits,
// hangs or reports unhealthy before it commits is rolled back: N resumes
// accepting and keeps serving. Each connection is served by exactly one
// generation, so no request is refused, reset or dropped.
//
// Draining follows an order measured to lose nothing: stop accepting; answer
// the next request on each keep-alive connection with "Connection: close";
// close a connection only after it has been idle for a short grace; shut the
// http.Server down only when no connection is left.
//
// # Packages
//
//   - upgrader: the process hand-over (New, Listen, Ready, Upgrade, Drain, Stop).
//   - listener: tracked listeners and connections, pause/resume, Drain, the http.Server glue.
//   - signal: OS signals to actions, with coalescing of signal storms.
//   - reload: a versioned hot-swappable value with leases, history and rollback, and a file watcher.
//   - bundle: static front-end bundles served from memory and swapped atomically.
//   - plugin: go-plugin plugins swapped under load, with crash restart and canaries.
//
// # Signals
//
// The signal package maps, by default:
//
//	SIGHUP           upgrade: start the new binary as the next generation
//	SIGUSR2          reload: hot-swap bundles, flags or plugins (if the program sets it)
//	SIGTERM, SIGINT  graceful stop: drain, then exit 0
//	second SIGTERM   immediate stop (also SIGQUIT)
//
// Upgrade signals that arrive while an upgrade runs collapse into one
// follow-up upgrade.
//
// # systemd
//
// A unit for a server built on handoff (examples/systemd explains every
// setting; an integration test boots systemd 252 and runs it):
//
//	[Service]
//	Type=notify
//	NotifyAccess=main
//	ExecStart=/usr/local/bin/app -pidfile /run/app/app.pid
//	ExecReload=/bin/kill -HUP $MAINPID
//	PIDFile=/run/app/app.pid
//	RuntimeDirectory=app
//	KillMode=control-group
//	TimeoutStartSec=90
//	TimeoutStopSec=45
//
// The server sends READY=1, RELOADING=1 around each upgrade, STOPPING=1 and
// watchdog pings from whichever process is main. systemd follows the main
// process across upgrades through the PID file, never MAINPID=: systemd 252
// treats a MAINPID= that names the old main's child as alien and kills it
// outright on stop.
package handoff
