// Package k8stest runs a real, throw-away Kubernetes cluster for tests:
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// containerd, one kubelet and kube-proxy (iptables mode), all inside a
// network namespace that has no route out, so every node, pod and Service
// address exists only there. Tests import images built from local static
// Go binaries, deploy objects through the API, run their load generator
// inside the namespace (Call, Command, Dial) and drive the cluster the way
// an operator does (RolloutRestart, DeletePod, Drain, UpdateConfigMap),
// reading back what the pods went through (WatchTerminations, Events,
// Logs).
//
//	func TestMain(m *testing.M) {
//		k8stest.RunHelper(map[string]k8stest.Func{"load": load}) // for Call
//		os.Exit(m.Run())
//	}
//
//	func TestRollout(t *testing.T) {
//		c := k8stest.New(t, k8stest.Options{})
//		ctx := context.Background()
//		require.NoError(t, c.ImportImage(ctx, "handoff.local/server:1", bin))
//		require.NoError(t, c.Apply(ctx, manifests)) // Deployment, Service, PDB…
//		require.NoError(t, c.WaitRollout(ctx, "default", "web"))
//		ip, err := c.WaitService(ctx, "default", "web", 3)
//		require.NoError(t, err)
//		go c.Call(ctx, "load", []byte(ip)) // the load, inside the namespace
//		require.NoError(t, c.RolloutRestart(ctx, "default", "web"))
//		require.NoError(t, c.WaitRollout(ctx, "default", "web"))
//	}
//
// The package's Example has the whole flow.
//
// # The binaries
//
// The cluster is built from the Go module proxy by the module in build/
// (its own go.mod: no Kubernetes module enters handoff's), with the
// version strings Kubernetes' own build sets, and cached by version and
// sources under os.UserCacheDir()/handoff-k8stest. A cold build (ColdBuild:
// about 13 minutes on two cores, 23 on two cores other tests were loading)
// does not fit go test's default -timeout of 10 minutes, and cmd/go kills
// a test binary at its -timeout whatever it is doing: New says so at once
// when the binaries are not cached; run with -timeout 30m. With the
// binaries cached, a cluster is Ready about 5 s after Start. The pause
// image and the namespaces' init are one small static program of the
// build module.
//
// # The node
//
// Start creates a new pid, mount, network, uts and ipc namespace whose
// init makes every mount private, mounts its own /proc and a tmpfs /run,
// binds directories of the work directory (under os.TempDir) over /var/lib
// and /var/log, brings up the loopback device with NodeIP and routes
// ServiceCIDR to a bridge with no port (nothing leads out: other addresses
// are unreachable); then the reaper (the pause binary) becomes its PID 1. Every component runs in all
// those namespaces (nsenter); containerd's pods get their addresses from
// the CNI bridge plugin on cni0 (PodCIDR), Services their cluster IPs in
// ServiceCIDR, which kube-proxy's iptables rules in the namespace make
// reachable. The kubelet uses the cgroupfs driver with a cgroup root of its
// own in every hierarchy. The host keeps only what cannot be namespaced:
// the cgroups, and six kernel settings the kubelet insists on.
//
// # Lifetime and teardown
//
// The namespaces' init dies with the test process (parent-death signal,
// from a thread that lives as long as the cluster) and after
// Options.Lifetime; its death makes the kernel kill every process of the
// cluster, containers included, and with the last of them go the mounts,
// the network namespaces and their iptables rules. Close does that, waits
// for it, removes the cgroups, restores the kernel settings and removes the
// work directory: the host is left as Start found it. The next Start sweeps
// what a killed run left (cgroups, settings, work directory). One cluster
// runs on a machine at a time: Start waits for a lock, an abstract unix
// socket that the kernel releases with its process.
//
// # The acceptance of Kubernetes rolling updates
//
// TestKubernetesAcceptance (acceptance_linux_test.go) proves issue 11's
// points a to e on one cluster. examples/kubernetes's server, built static
// and imported under the image name its deploy.yaml gives, runs as that
// file ships it: a Deployment of 3 replicas (maxUnavailable 0, maxSurge 1)
// with the termination policy (a 5 s shutdown delay, a preStop httpGet of
// /prestop on the health port, terminationGracePeriodSeconds 30 for a 20 s
// drain timeout), its Service, its PodDisruptionBudget (maxUnavailable 1)
// and the ConfigMap of its flags file. The control is the same ConfigMap,
// Deployment and Service under another name with no delay and no preStop
// (the test checks the settings it depends on, and makes the control by
// changing exactly those). The load is upgradertest's acceptance mix
// (keep-alive clients that check and that do not, a new connection per
// request, slow requests, 3 s streams; none retries), run by a helper
// (Call) inside the namespace against the Service's cluster IP, so that
// every request goes through kube-proxy's rules; it starts once every
// kind of client has had an answer and stops when the test closes a FIFO
// (Call's ctx leaves a helper only 5 s, less than a request that waits
// for its timeout). In order:
//
//   - a: three rollout restarts: no failed request, every stream whole,
//     9 terminations, each exit 0 without SIGKILL;
//   - b: the same on the control: failed requests (connections refused
//     while kube-proxy still routes to a pod that stopped accepting),
//     which the test requires, then logs both figures on one line
//     ("issue 11 a/b");
//   - c: Drain of the pods through the budget, then a pod deleted by
//     hand: no failed request, 4 clean exits. With one node, Drain does
//     not cordon: it asks for every eviction at once, the budget lets one
//     through at a time (429 for the others, asked again each second),
//     and each replacement lands on the same node, as it would elsewhere;
//   - d: the ConfigMap's flags file changed: each pod serves the new
//     value once the kubelet has swapped its volume's ..data symlink (its
//     next sync of the pod, about 10 s here), with no failed request, the
//     same pod UIDs and no restart;
//   - e: a preStop call of the test's own, then the pod's deletion (the
//     kubelet's preStop call, then its SIGTERM): the pod's log, followed
//     to its end, shows two preStop calls, one stop, one drain, one exit;
//     the exit is 0, no FailedPreStopHook event, no failed request.
//
// Measured on 2 cores shared with other tests: with the binaries cached,
// 2.5 to 4 minutes, the cluster's start and the example's build included
// (go test's wall time 2m32s to 3m11s for one run); TestCluster and
// TestKilledCluster add under a minute. Cold, the cluster's binaries take
// 9 minutes to build at a load average of 4 to 8 and 23 at 10 to 18 (the
// module cache warm), and the race-enabled test binary and the example
// 1.5 minutes each.
//
// # Requirements
//
// Linux, root, go, and the Debian packages containerd, runc,
// containernetworking-plugins, iptables and iproute2 (Available names what
// is missing; .ci/run installs them); stubs elsewhere return ErrUnavailable. New (and
// RequireAvailable) fail a test where the cluster cannot run when CI is set
// or as root, and skip it with the reason elsewhere.
// On these machines CAP_SYS_RESOURCE is missing and cgroups are v1
// (hybrid): containerd runs with restrict_oom_score_adj and the kubelet
// with failCgroupV1: false.
package k8stest
