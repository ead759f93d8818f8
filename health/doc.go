// Package health is a server's probes and its termination policy: the
// liveness, readiness and startup probes and the preStop endpoint as an
// http.Handler, gRPC's standard health service kept in step with them, and
// the order in which a stopping process leaves its load balancers: serve on
// for a delay, then drain.
//
// A Policy follows the phases of one process: starting (until it is in
// charge: Started), serving, delaying (Stop was called: it serves normally
// for Options.ShutdownDelay while the load balancers stop routing to it),
// draining (Options.Drain was called, or the program began a drain
// itself: Draining), stopped (Drained). The probes answer from the phase:
//
//	endpoint    starting  serving  delaying, draining          stopped
//	/livez      200       200      200                         200
//	/startupz   503       200      200                         200
//	/readyz     503       check    check (503 with the flip)   503
//	/prestop    Stop, then wait until stopped (or the deadline): 200
//
// where "check" is Options.Ready, the program's own readiness check, run
// for each probe. Liveness is green as long as the process answers: a
// failing liveness probe gets a container killed, and a process that drains
// is doing its job.
//
// # The delay, and why readiness stays green by default
//
// When a pod is deleted, the kubelet sends SIGTERM (after the preStop hook)
// while kube-proxy, ingress controllers and cloud load balancers still route
// to the pod: they learn of the deletion through the API, which takes about
// 1–3 s for kube-proxy, 10–20 s for ingress controllers, 45–60 s for cloud
// load balancers; and conntrack keeps established flows pinned to it. A
// process that stops accepting at once refuses the connections still sent
// its way. During ShutdownDelay the process serves normally, and (unless
// KeepAliveDuringDelay) every HTTP response carries "Connection: close",
// which on HTTP/2 makes net/http send a GOAWAY (see Wrap): keep-alive
// clients reconnect, through the Service, to pods that stay, while this
// one still answers. Then it drains.
//
// The readiness flip (NotReadyOnStop) is off by default. Since Kubernetes
// 1.26 the endpoint of a terminating pod is marked not ready whatever its
// probe says, so the flip adds nothing there; and since 1.28 kube-proxy
// falls back to endpoints that are terminating but still serving (ready
// according to their probe) when a Service has no other: failing readiness
// during the termination then black-holes the Service's traffic (a
// single-replica Deployment, a node drain that takes every pod at once)
// and pages someone on every deploy. Turn it on for load balancers that
// only follow the probe (a cloud load balancer health-checking the pod).
//
// # The preStop endpoint
//
// A container's preStop hook (httpGet on /prestop) starts the termination
// and returns when the drain is over, or once ShutdownDelay +
// DrainTimeout + PreStopSlack have passed; the kubelet sends SIGTERM only
// after the hook has returned, and a SIGTERM after it changes nothing (the
// process is exiting). It is idempotent: a second call (the kubelet may
// call it again) starts nothing and waits for the same drain. The
// kubelet's grace period (terminationGracePeriodSeconds) counts from
// before the hook: it must exceed ShutdownDelay + DrainTimeout, which New
// checks when Options.GracePeriod is set.
//
// Serve the Handler on a port of its own (handoff.Options.HealthAddr does):
// the preStop call waits for the drain, and on a port that is drained it
// would wait for itself; and the kubelet's probes (User-Agent kube-probe/…)
// then stay out of the server's connection counts and its request logs.
//
// # gRPC
//
// Options.GRPC drives gRPC's standard health service
// (google.golang.org/grpc/health's *Server, whose Shutdown and Resume are
// all this package needs, so it links no gRPC): NOT_SERVING for every
// service whenever readiness fails by phase (from Stop with
// NotReadyOnStop, and once stopped), SERVING again when a generation takes
// charge again. A gRPC server accepts no connection before it is in charge,
// so nothing sees its status while it starts; and it stops taking new
// connections (GracefulStop, a GOAWAY on each) when its drain begins, so a
// probe on a new connection fails from then on, whatever the status says.
// In between, the statuses are the program's own (SetServingStatus). For
// the kubelet, prefer the HTTP probes on a port of their own: they answer
// in every phase. gRPC has no way to send a GOAWAY and keep serving, so
// during the delay gRPC connections stay; they get their GOAWAY at the
// drain, when the load balancers have stopped routing new ones here.
//
// # In Kubernetes, and in-place upgrades
//
// handoff.Run composes a Policy with the rest (Options.ShutdownDelay,
// HealthAddr and the fields beside them). A container whose PID 1 is the
// server dies with the generation that exits, so in a pod the binary is
// replaced by a rolling update of the image, not by an in-place upgrade:
// Run refuses SIGHUP as PID 1 and says so. Hot swaps within the process
// (bundles, flags, plugins, a mounted ConfigMap) work as anywhere. See
// examples/kubernetes.
package health
