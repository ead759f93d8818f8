//go:build linux

package k8stest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const prefix = "handoff-k8stest."

// kernelTunables are the global sysctls the kubelet sets at start (see
// setupKernelTunables in its container manager; protectKernelDefaults
// would make it fail instead). Start saves them and Close restores them.
var kernelTunables = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// hostPrograms are what a cluster needs from the machine, and the Debian
// packages that have them.
var hostPrograms = map[string]string{
	"nsenter": "util-linux", "mount": "mount", "hostname": "hostname", "ip": "iproute2",
	"iptables": "iptables", "iptables-save": "iptables", "iptables-restore": "iptables",
	"containerd": "containerd", "containerd-shim-runc-v2": "containerd", "ctr": "containerd", "runc": "runc",
	"/usr/lib/cni/bridge": "containernetworking-plugins", "/usr/lib/cni/host-local": "containernetworking-plugins",
	"/usr/lib/cni/loopback": "containernetworking-plugins", "go": "golang",
}

// Available reports why a cluster cannot run here (an error wrapping
// ErrUnavailable), or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root (namespaces, mounts, cgroups and iptables need it)", ErrUnavailable)
	}
	var missing []string
	pkgs := map[string]bool{}
	for prog, pkg := range hostPrograms {
		if _, err := exec.LookPath(prog); err != nil {
			missing = append(missing, prog)
			pkgs[pkg] = true
		}
	}
	if len(missing) > 0 {
		var list []string
		for p := range pkgs {
			list = append(list, p)
		}
		return fmt.Errorf("%w: %s not found (Debian: apt-get install %s)", ErrUnavailable, strings.Join(missing, ", "), strings.Join(list, " "))
	}
	fss, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for _, f := range []string{"overlay", "tmpfs", "proc"} {
		if !bytes.Contains(fss, []byte("\t"+f+"\n")) {
			return fmt.Errorf("%w: no %s file system", ErrUnavailable, f)
		}
	}
	if len(cgroupMounts()) == 0 {
		return fmt.Errorf("%w: no cgroup file system mounted", ErrUnavailable)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Lifetime <= 0 {
		o.Lifetime = DefaultLifetime
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	if o.BuildTimeout <= 0 {
		o.BuildTimeout = DefaultBuildTimeout
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// node is the Linux part of a Cluster: its processes, namespaces, cgroups
// and the host state it changed.
type node struct {
	bins string
	lock io.Closer

	spawn     chan func() // run on the spawner's locked thread
	spawnDone chan struct{}

	initCmd  *exec.Cmd
	initDone chan struct{}
	netns    int // fd of the cluster's network namespace, -1 when closed
	kill     *time.Timer

	mu    sync.Mutex
	procs map[string]*proc

	cgroupName string
	closeOnce  sync.Once
	closeErr   error
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start builds the binaries if they are not cached, then boots a cluster
// and returns it once its node is Ready and a pod can be created in the
// namespace "default". Only one cluster runs on a machine at a time
// (lockName): Start waits, bounded by ctx and
// Options.Lifetime, for one that runs. Leftovers of runs that were killed
// (work directories, cgroups, the kernel settings they changed) are swept
// first. The caller must Close the cluster.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	opts = opts.withDefaults()
	if err := Available(); err != nil {
		return nil, err
	}
	cache, err := cacheRoot()
	if err != nil {
		return nil, err
	}
	n := &node{netns: -1, procs: map[string]*proc{}, spawn: make(chan func()), spawnDone: make(chan struct{})}
	c := &Cluster{n: n}

	t0 := time.Now()
	lctx, cancel := context.WithTimeout(ctx, opts.Lifetime)
	n.lock, err = lockMachine(lctx)
	cancel()
	if err != nil {
		return nil, err
	}
	c.Timings.Lock = time.Since(t0)
	if c.Timings.Lock > time.Second {
		opts.Logf("k8stest: waited %s for another cluster of this machine to end", c.Timings.Lock.Round(time.Second))
	}
	sweep(os.TempDir(), opts.Logf)
	if opts.Locked != nil {
		opts.Locked()
	}

	t0 = time.Now()
	bctx, cancel := context.WithTimeout(ctx, opts.BuildTimeout)
	n.bins, c.Timings.Cached, err = buildBinaries(bctx, cache, opts.Logf)
	cancel()
	c.Timings.Build = time.Since(t0)
	if err != nil {
		n.lock.Close()
		return nil, err
	}

	go n.spawner()
	t0 = time.Now()
	bctx, cancel = context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	if err := c.boot(bctx, opts); err != nil {
		if c.Dir != "" {
			err = fmt.Errorf("%w\n%s", err, c.logTails())
		}
		if cerr := c.Close(); cerr != nil {
			err = fmt.Errorf("%w; teardown: %w", err, cerr)
		}
		return nil, err
	}
	c.Timings.Boot = time.Since(t0)
	opts.Logf("k8stest: cluster ready: binaries %s (cached %v), boot %s; work directory %s",
		c.Timings.Build.Round(time.Millisecond), c.Timings.Cached, c.Timings.Boot.Round(time.Millisecond), c.Dir)
	return c, nil
}

// logTails is the end of every component's log, for a failed start.
func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, name := range append([]string{"init"}, components...) {
		if _, err := os.Stat(c.LogFile(name)); err == nil {
			fmt.Fprintf(&b, "--- %s:\n%s\n", name, tail(c.LogFile(name), 15))
		}
	}
	return b.String()
}

// spawner owns the OS thread every process of the cluster is started
// from. A parent-death signal fires when the thread that started the child
// ends, not the process (golang/go#27505), and the Go runtime ends a thread
// when a goroutine locked to it returns: this thread lives, locked, until
// Close, so the namespace's init dies with the test and not earlier.
func (n *node) spawner() {
	runtime.LockOSThread()
	defer close(n.spawnDone)
	for f := range n.spawn {
		f()
	}
}

// startCmd starts cmd on the spawner's thread.
func (n *node) startCmd(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	n.spawn <- func() { errc <- cmd.Start() }
	return <-errc
}

func (c *Cluster) boot(ctx context.Context, opts Options) error {
	n := c.n
	dir, err := os.MkdirTemp("", prefix+strconv.Itoa(os.Getpid())+".")
	if err != nil {
		return err
	}
	c.Dir = dir
	for _, d := range []string{"logs", "var-lib", "var-log", "cni", "tmp", "images"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := saveSysctls(filepath.Join(dir, "sysctl.saved")); err != nil {
		return err
	}
	n.cgroupName = filepath.Base(dir)
	if err := createCgroups(n.cgroupName); err != nil {
		return err
	}
	p, err := newPKI(filepath.Join(dir, "pki"))
	if err != nil {
		return err
	}
	if err := issueCerts(p); err != nil {
		return err
	}
	if err := c.writeConfigs(p, "/"+n.cgroupName); err != nil {
		return err
	}
	if err := c.startInit(ctx, opts.Lifetime); err != nil {
		return err
	}
	c.api = &apiClient{base: "https://127.0.0.1:6443", hc: c.adminClient(p)}

	args := c.args(n.bins, p)
	for _, name := range []string{"containerd", "etcd"} {
		if err := c.startProc(name, args[name]); err != nil {
			return err
		}
	}
	sock := filepath.Join(fmt.Sprintf("/proc/%d/root", n.initCmd.Process.Pid), containerdSock)
	if err := c.waitFor(ctx, "containerd", func() error {
		conn, err := net.Dial("unix", sock)
		if err == nil {
			conn.Close()
		}
		return err
	}); err != nil {
		return err
	}
	if err := c.ImportImage(ctx, pauseImage, filepath.Join(n.bins, "pause")); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "etcd", func() error { return c.etcdHealthy(ctx) }); err != nil {
		return err
	}
	if err := c.startProc("kube-apiserver", args["kube-apiserver"]); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "kube-apiserver", func() error { return c.Get(ctx, "/readyz", nil) }); err != nil {
		return err
	}
	for _, name := range []string{"kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"} {
		if err := c.startProc(name, args[name]); err != nil {
			return err
		}
	}
	if err := c.waitFor(ctx, "node Ready", c.nodeReady); err != nil {
		return err
	}
	// Pods are refused until the namespace's service account and the
	// CA bundle of their token volume exist.
	return c.waitFor(ctx, "default service account", func() error {
		if err := c.Get(ctx, "/api/v1/namespaces/default/serviceaccounts/default", nil); err != nil {
			return err
		}
		return c.Get(ctx, "/api/v1/namespaces/default/configmaps/kube-root-ca.crt", nil)
	})
}

// startInit starts the namespaces' init and waits until it is ready.
func (c *Cluster) startInit(ctx context.Context, lifetime time.Duration) error {
	n := c.n
	logf, err := os.Create(c.LogFile("init"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("/bin/sh", filepath.Join(c.Dir, "init.sh"), c.Dir, filepath.Join(n.bins, "pause"), NodeIP, NodeName, ServiceCIDR)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWNET | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
		Setsid:     true,
		// The cluster dies with the test process, even if it is killed:
		// when the init of a pid namespace dies, the kernel kills every
		// process in it, the containers' namespaces included.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := n.startCmd(cmd); err != nil {
		return fmt.Errorf("%w: start the namespaces' init: %w", ErrUnavailable, err)
	}
	n.initCmd, n.initDone = cmd, make(chan struct{})
	n.kill = time.AfterFunc(lifetime, func() { _ = cmd.Process.Kill() })
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("init said %q", line)
		}
		ready <- err
		// The pipe's other end is closed by the exec of the reaper.
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(n.initDone)
	}()
	select {
	case err := <-ready:
		if err != nil {
			return fmt.Errorf("k8stest: namespace init: %w\n%s", err, tail(c.LogFile("init"), 20))
		}
	case <-ctx.Done():
		return fmt.Errorf("k8stest: namespace init: %w", ctx.Err())
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.netns = fd
	n.mu.Unlock()
	return nil
}

// nsenter is the command line that runs args in every namespace of the
// cluster, in its work directory.
func (c *Cluster) nsenter(args ...string) *exec.Cmd {
	all := append([]string{"-t", strconv.Itoa(c.n.initCmd.Process.Pid), "-m", "-n", "-p", "-u", "-i", "--wd=" + c.Dir, "--"}, args...)
	cmd := exec.Command("nsenter", all...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + c.Dir, "TMPDIR=" + filepath.Join(c.Dir, "tmp"), "LANG=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// startProc starts a component, its output to its log file.
func (c *Cluster) startProc(name string, args []string) error {
	logf, err := os.OpenFile(c.LogFile(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := c.nsenter(args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := c.n.startCmd(cmd); err != nil {
		return fmt.Errorf("k8stest: start %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	c.n.mu.Lock()
	c.n.procs[name] = p
	c.n.mu.Unlock()
	return nil
}

// exited returns an error naming a component that has exited.
func (c *Cluster) exited() error {
	c.n.mu.Lock()
	defer c.n.mu.Unlock()
	for name, p := range c.n.procs {
		select {
		case <-p.done:
			return fmt.Errorf("k8stest: %s exited: %v", name, p.err)
		default:
		}
	}
	return nil
}

// waitFor polls check until it succeeds, a component exits, or ctx ends.
func (c *Cluster) waitFor(ctx context.Context, what string, check func() error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for {
		err := check()
		if err == nil {
			return nil
		}
		if xerr := c.exited(); xerr != nil {
			return fmt.Errorf("k8stest: waiting for %s: %w", what, xerr)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("k8stest: waiting for %s (%s): %w (last: %v)", what, time.Since(start).Round(time.Millisecond), ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func (c *Cluster) etcdHealthy(ctx context.Context) error {
	hc := &http.Client{Transport: &http.Transport{DialContext: c.Dial}, Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:2379/health", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h struct{ Health string }
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return err
	}
	if h.Health != "true" {
		return fmt.Errorf("etcd health %q", h.Health)
	}
	return nil
}

func (c *Cluster) nodeReady() error {
	var nd struct {
		Spec   struct{ Taints []struct{ Key string } }
		Status struct {
			Conditions []struct{ Type, Status, Message string }
		}
	}
	if err := c.Get(context.Background(), "/api/v1/nodes/"+NodeName, &nd); err != nil {
		return err
	}
	for _, cond := range nd.Status.Conditions {
		if cond.Type == "Ready" && cond.Status != "True" {
			return fmt.Errorf("node not ready: %s", cond.Message)
		}
	}
	// The node lifecycle controller removes the not-ready taint a moment
	// after; until then the scheduler places nothing.
	for _, t := range nd.Spec.Taints {
		if strings.HasPrefix(t.Key, "node.kubernetes.io/") {
			return fmt.Errorf("node tainted %s", t.Key)
		}
	}
	return nil
}

// adminClient is the HTTP client of the API server, as administrator,
// dialling inside the namespace.
func (c *Cluster) adminClient(p *pki) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caPEM)
	cert, err := tls.LoadX509KeyPair(p.path("admin.crt"), p.path("admin.key"))
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if err == nil {
		tc.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Transport: &http.Transport{
		DialContext:         c.Dial,
		TLSClientConfig:     tc,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
	}}
}

// Dial connects to addr (an IP literal with port: names would be resolved
// outside) from inside the cluster's network namespace, so that cluster IPs
// and pod IPs are reachable. The socket is created on a locked OS thread
// that has entered the namespace (setns), which then leaves it; the
// connection is used from anywhere. ctx bounds the dial.
func (c *Cluster) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	c.n.mu.Lock()
	ns := -1
	if c.n.netns >= 0 {
		ns, _ = unix.FcntlInt(uintptr(c.n.netns), unix.F_DUPFD_CLOEXEC, 0)
	}
	c.n.mu.Unlock()
	if ns < 0 {
		return nil, errors.New("k8stest: the cluster is closed")
	}
	go func() {
		defer unix.Close(ns)
		runtime.LockOSThread()
		// Without the UnlockOSThread below (the thread could not go back
		// to its own namespace), the thread ends with this goroutine.
		self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer unix.Close(self)
		if err := unix.Setns(ns, unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("k8stest: enter the cluster's network namespace: %w", err)}
			return
		}
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if unix.Setns(self, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// Command returns a command that runs name inside the cluster's network
// namespace (nsenter --net), and in the host's other namespaces: it sees
// the host's files and processes, and reaches the cluster's Service and
// pod IPs. It dies with the test process (parent-death signal), and gets
// SIGTERM when ctx ends (SIGKILL 5 s later). It does not die with the
// cluster: end it before Close.
func (c *Cluster) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	pid := 0
	if c.n.initCmd != nil {
		pid = c.n.initCmd.Process.Pid
	}
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{fmt.Sprintf("--net=/proc/%d/ns/net", pid), "--", name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// ImportImage makes the static Linux binary at path the image ref (one
// layer: the binary as /<its base name>, the entrypoint; an empty /tmp),
// imported into the node's containerd where the kubelet finds it: pods use
// it with imagePullPolicy: Never (or IfNotPresent). A ref without a
// registry host is the runtime's docker.io one, as in a pod spec. Importing
// another binary under the same ref replaces the image. ctx bounds it.
func (c *Cluster) ImportImage(ctx context.Context, ref, binary string) error {
	f, err := os.CreateTemp(filepath.Join(c.Dir, "images"), "image-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	werr := writeImage(f, ref, binary)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("k8stest: image %s: %w", ref, werr)
	}
	cmd := c.nsenter("ctr", "--address", containerdSock, "--namespace", "k8s.io", "images", "import", f.Name())
	done := make(chan struct{})
	var out []byte
	var runErr error
	go func() {
		defer close(done)
		out, runErr = cmd.CombinedOutput()
	}()
	select {
	case <-done:
	case <-ctx.Done():
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
		<-done
		return fmt.Errorf("k8stest: import image %s: %w", ref, ctx.Err())
	}
	if runErr != nil {
		return fmt.Errorf("k8stest: import image %s: %w: %s", ref, runErr, bytes.TrimSpace(out))
	}
	return nil
}

// WaitService waits until the Service ns/name has exactly n ready
// endpoints and kube-proxy has programmed them: the rules in the
// namespace's nat table send its cluster IP (first port) to n endpoints.
// It returns the cluster IP. A Deployment's rollout ends before kube-proxy
// has caught up (its minimum sync period is a second); a test that sends
// load at once waits here first. ctx bounds it.
func (c *Cluster) WaitService(ctx context.Context, ns, name string, n int) (string, error) {
	var ip string
	err := c.waitFor(ctx, fmt.Sprintf("Service %s/%s with %d endpoints", ns, name, n), func() error {
		var svc struct {
			Spec struct {
				ClusterIP string
				Ports     []struct{ Port int }
			}
		}
		if err := c.Get(ctx, "/api/v1/namespaces/"+ns+"/services/"+name, &svc); err != nil {
			return err
		}
		if len(svc.Spec.Ports) == 0 || svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == "None" {
			return fmt.Errorf("k8stest: Service %s/%s has no cluster IP and port", ns, name)
		}
		ip = svc.Spec.ClusterIP
		cmd := c.nsenter("iptables-save", "-t", "nat")
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("iptables-save: %w", err)
		}
		if got := proxiedEndpoints(string(out), ip, svc.Spec.Ports[0].Port); got != n {
			return fmt.Errorf("kube-proxy sends %s:%d to %d endpoints", ip, svc.Spec.Ports[0].Port, got)
		}
		return nil
	})
	return ip, err
}

// proxiedEndpoints counts the endpoints kube-proxy's iptables rules (the
// output of iptables-save -t nat) send ip:port to: the KUBE-SEP- jumps of
// the KUBE-SVC- chain that KUBE-SERVICES sends it to.
func proxiedEndpoints(rules, ip string, port int) int {
	chain := ""
	for _, l := range strings.Split(rules, "\n") {
		if strings.HasPrefix(l, "-A KUBE-SERVICES ") && strings.Contains(l, " -d "+ip+"/32 ") &&
			strings.Contains(l, " --dport "+strconv.Itoa(port)+" ") {
			if _, after, ok := strings.Cut(l, " -j "); ok && strings.HasPrefix(after, "KUBE-SVC-") {
				chain = strings.Fields(after)[0]
			}
		}
	}
	if chain == "" {
		return 0
	}
	n := 0
	for _, l := range strings.Split(rules, "\n") {
		if strings.HasPrefix(l, "-A "+chain+" ") && strings.Contains(l, " -j KUBE-SEP-") {
			n++
		}
	}
	return n
}

// Close tears the cluster down and leaves the host as Start found it: it
// kills the namespaces' init, which ends every process of the cluster
// (containers included) and with them its mounts, network namespaces and
// iptables rules; it waits for them, removes the cgroups, restores the
// kernel settings the kubelet changed, and removes the work directory.
// Bounded (about a minute at most); idempotent; it returns the first
// errors.
func (c *Cluster) Close() error {
	c.n.closeOnce.Do(func() { c.n.closeErr = c.close() })
	return c.n.closeErr
}

func (c *Cluster) close() error {
	n := c.n
	var errs []error
	if n.kill != nil {
		n.kill.Stop()
	}
	if n.initCmd != nil {
		_ = n.initCmd.Process.Kill()
		select {
		case <-n.initDone:
		case <-time.After(30 * time.Second):
			errs = append(errs, errors.New("k8stest: the namespaces' init did not exit within 30s of SIGKILL"))
		}
	}
	n.mu.Lock()
	procs := n.procs
	n.procs = map[string]*proc{}
	if n.netns >= 0 {
		unix.Close(n.netns)
		n.netns = -1
	}
	n.mu.Unlock()
	deadline := time.After(10 * time.Second)
	for name, p := range procs {
		select {
		case <-p.done:
		case <-deadline:
			_ = p.cmd.Process.Kill()
			errs = append(errs, fmt.Errorf("k8stest: %s (nsenter) still running after its namespace died", name))
		}
	}
	if c.api != nil {
		c.api.hc.CloseIdleConnections()
	}
	close(n.spawn)
	<-n.spawnDone
	if n.cgroupName != "" {
		if err := removeCgroups(n.cgroupName, 10*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Dir != "" {
		if err := restoreSysctls(filepath.Join(c.Dir, "sysctl.saved")); err != nil {
			errs = append(errs, err)
		}
		if err := removeWorkDir(c.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	if n.lock != nil {
		n.lock.Close()
	}
	return errors.Join(errs...)
}

// lockName is the machine's cluster lock: an abstract unix socket, which
// only one process can bind, which the kernel releases when that process
// dies, and which leaves no file behind. Abstract names belong to the
// network namespace: every test process runs in the host's.
const lockName = "@handoff-k8stest.lock"

// lockMachine takes the machine's cluster lock, waiting for it within ctx.
// Closing the returned listener releases it.
func lockMachine(ctx context.Context) (io.Closer, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: lockName, Net: "unix"})
		if err == nil {
			return l, nil
		}
		if !errors.Is(err, unix.EADDRINUSE) {
			return nil, fmt.Errorf("k8stest: lock %s: %w", lockName, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("k8stest: waiting for another cluster of this machine to end: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// cgroupMounts returns the mount points of the host's cgroup hierarchies
// (v1 and v2), as this process sees them.
func cgroupMounts() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var mnts []string
	for _, line := range strings.Split(string(b), "\n") {
		_, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		fstype := strings.Fields(post)[0]
		if fstype == "cgroup" || fstype == "cgroup2" {
			mnts = append(mnts, strings.Fields(line)[4])
		}
	}
	return mnts
}

// createCgroups creates the cgroup name at the root of every hierarchy: the
// kubelet's cgroupRoot, under which it and runc create all of theirs. A
// cpuset cgroup needs its cpus and mems before it can hold anything.
func createCgroups(name string) error {
	for _, mnt := range cgroupMounts() {
		dir := filepath.Join(mnt, name)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: create cgroup %s: %w", ErrUnavailable, dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(mnt, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					return fmt.Errorf("k8stest: %s: %w", filepath.Join(dir, f), err)
				}
			}
		}
	}
	return nil
}

// removeCgroups removes the tree name in every hierarchy, deepest first,
// retrying within wait while the kernel still counts a dying process in
// one.
func removeCgroups(name string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		var last error
		for _, mnt := range cgroupMounts() {
			var dirs []string
			_ = filepath.WalkDir(filepath.Join(mnt, name), func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				if err := unix.Rmdir(dirs[i]); err != nil && !errors.Is(err, unix.ENOENT) {
					last = fmt.Errorf("k8stest: remove cgroup %s: %w", dirs[i], err)
				}
			}
		}
		if last == nil || time.Now().After(deadline) {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// saveSysctls writes the values of kernelTunables to file.
func saveSysctls(file string) error {
	saved := map[string]string{}
	for _, k := range kernelTunables {
		b, err := os.ReadFile(filepath.Join("/proc/sys", k))
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		saved[k] = strings.TrimSpace(string(b))
	}
	b, err := json.Marshal(saved)
	if err != nil {
		return err
	}
	return os.WriteFile(file, b, 0o644)
}

// restoreSysctls writes back the values saveSysctls saved in file, where
// they changed.
func restoreSysctls(file string) error {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	saved := map[string]string{}
	if err := json.Unmarshal(b, &saved); err != nil {
		return fmt.Errorf("k8stest: %s: %w", file, err)
	}
	var errs []error
	for k, v := range saved {
		p := filepath.Join("/proc/sys", k)
		if cur, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(cur)) == v {
			continue
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("k8stest: restore %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// removeWorkDir removes a work directory, unless something is mounted
// under it as the host sees it (the cluster's mounts live in its own mount
// namespace, which is gone by now).
func removeWorkDir(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			return fmt.Errorf("k8stest: %s is a mount point on the host; not removing %s", f[4], dir)
		}
	}
	return os.RemoveAll(dir)
}

// sweep removes what clusters of processes that are gone left behind: it
// restores the kernel settings they saved, removes their cgroups and their
// work directories. The caller holds the machine lock, so no other cluster
// is starting or running.
func sweep(tmp string, logf func(string, ...any)) {
	ents, _ := os.ReadDir(tmp)
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !e.IsDir() {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, ".")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || unix.Kill(pid, 0) == nil {
			continue
		}
		dir := filepath.Join(tmp, e.Name())
		logf("k8stest: sweeping the leftovers of a cluster of process %d (%s)", pid, dir)
		for _, err := range []error{
			removeCgroups(e.Name(), 5*time.Second),
			restoreSysctls(filepath.Join(dir, "sysctl.saved")),
			removeWorkDir(dir),
		} {
			if err != nil {
				logf("k8stest: sweep: %v", err)
			}
		}
	}
}
