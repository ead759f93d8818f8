// Package handoff is a library for zero-downtime deployments inside a Go
// service. This root package is the one call for the common case, Run (and
// ListenAndServe for one http.Server): it serves http.Servers and gRPC
// servers with every guarantee of the packages below, composed so that the
// shortest program is the correct one:
//
//	srv := &http.Server{Addr: ":8080", Handler: mux}
//	if err := handoff.ListenAndServe(srv, handoff.Options{PIDFile: "/run/app/app.pid"}); err != nil {
//		log.Fatal(err)
//	}
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
//   - handoff (this package): Run, ListenAndServe, HTTP, GRPC.
//   - upgrader: the process hand-over (New, Listen, Ready, Upgrade, Drain, Stop).
//   - listener: tracked listeners and connections, pause/resume, Drain, the http.Server glue.
//   - signal: OS signals to actions, with coalescing of signal storms.
//   - health: probes, the preStop endpoint and the termination policy (Kubernetes).
//   - reload: a versioned hot-swappable value with leases, history and rollback, and a file watcher.
//   - bundle: static front-end bundles served from memory and swapped atomically.
//   - plugin: go-plugin plugins swapped under load, with crash restart and canaries.
//
// # Signals
//
// Run handles, by default:
//
//	SIGHUP           upgrade: start the new binary as the next generation (not as PID 1)
//	SIGUSR2          reload: Options.Reload hot-swaps bundles or plugins (if set)
//	SIGTERM, SIGINT  graceful stop: Options.ShutdownDelay serving on, drain, exit 0
//	second SIGTERM   immediate stop (also SIGQUIT): Run returns the signal's error
//
// Upgrade signals that arrive while an upgrade runs collapse into one
// follow-up upgrade, carried out on the newest binary by the generation in
// charge when the running one ends. A stop that arrives during an upgrade,
// before its commit, rolls it back and stops; after the commit it ends the
// old generation only. Once the commit is sent nothing rolls it back.
//
// # Kubernetes
//
// The termination policy (package health) makes a pod's stop lose nothing
// while load balancers still route to it: a graceful stop (SIGTERM, ctx,
// or a call of the preStop endpoint on Options.HealthAddr) serves on
// normally for Options.ShutdownDelay, answering HTTP with "Connection:
// close", then drains. The probes (/livez, /readyz, /startupz) answer on
// HealthAddr in every phase; the readiness flip (NotReadyOnStop) is off by
// default; GracePeriod makes Run warn at start when ShutdownDelay +
// DrainTimeout do not fit in the pod's terminationGracePeriodSeconds. The
// preStop endpoint is idempotent and a SIGTERM after it changes nothing:
// one termination, exit 0. During the delay SIGHUP is refused and an
// upgrade in its probation is rolled back. As PID 1 (a container's init,
// which takes the container down when it exits) Run refuses SIGHUP
// (ErrContainerInit) and serves on: roll out a new image instead.
// examples/kubernetes has the manifests and explains every number.
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
