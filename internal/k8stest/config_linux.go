//go:build linux

package k8stest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// initScript is PID 1 of the cluster's new pid, mount, network, uts and
// ipc namespaces, until it execs the pause binary (the reaper). It makes
// every mount private (nothing it or the cluster mounts reaches the host),
// gives the cluster its own /proc (its pid namespace), a tmpfs /run
// (containerd's state and sockets, the pods' network namespace files, the
// iptables lock) and the work directory's var-lib and var-log as /var/lib
// and /var/log (the kubelet's, containerd's and the CNI plugins' state, the
// pod logs: paths some of them do not let us configure), names the node,
// brings up the loopback device with the node's address and routes the
// Service range to a bridge with no port: the namespace has no device that
// leads out, so no route out.
const initScript = `#!/bin/sh
set -eu
W=$1 PAUSE=$2 NODEIP=$3 NODENAME=$4 SVCCIDR=$5
export LIBMOUNT_UTAB="$W/utab"   # never the host's /run/mount/utab
mount --make-rprivate /
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t tmpfs -o mode=755,nosuid,nodev handoff-k8stest-run /run
mkdir -p /run/lock /run/netns
mount --bind "$W/var-lib" /var/lib
mount --bind "$W/var-log" /var/log
hostname "$NODENAME"
ip link set lo up
ip addr add "$NODEIP/32" dev lo
# Without a route to the Service range, a connection to a cluster IP fails
# ("network is unreachable") before kube-proxy's DNAT in OUTPUT can rewrite
# it: the range goes to a bridge with no port, where the unrewritten rest
# is dropped. Every other address outside stays unreachable.
ip link add k8stest-svc type bridge
ip link set k8stest-svc up
ip route add "$SVCCIDR" dev k8stest-svc
echo ready
exec "$PAUSE" >>"$W/logs/init.log" 2>&1 </dev/null
`

// Paths inside the cluster's mount namespace.
const (
	containerdSock = "/run/containerd/containerd.sock"
	pauseImage     = "handoff.local/k8stest/pause:1"
)

// writeConfigs writes the configuration of every component into c.Dir.
func (c *Cluster) writeConfigs(p *pki, cgroupRoot string) error {
	w := c.Dir
	files := map[string]string{}

	files["containerd.toml"] = fmt.Sprintf(`version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/containerd-opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # CAP_SYS_RESOURCE may be missing (it is on these machines): runc then
  # cannot give a container a lower oom_score_adj than its own.
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
    max_conf_num = 1
`, containerdSock, pauseImage, filepath.Join(w, "cni"))

	files["cni/10-handoff.conflist"] = fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "handoff-k8stest",
  "plugins": [{
    "type": "bridge",
    "bridge": "cni0",
    "isGateway": true,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "ranges": [[{"subnet": %q, "gateway": "10.244.0.1"}]],
      "routes": [{"dst": "0.0.0.0/0"}],
      "dataDir": "/var/lib/cni/networks"
    }
  }]
}
`, PodCIDR)

	kubelet := map[string]any{
		"kind":                     "KubeletConfiguration",
		"apiVersion":               "kubelet.config.k8s.io/v1beta1",
		"containerRuntimeEndpoint": "unix://" + containerdSock,
		// No systemd here, and the machine has cgroup v1 (hybrid).
		"cgroupDriver": "cgroupfs",
		"failCgroupV1": false,
		// Every cgroup of the node under one the harness removes.
		"cgroupRoot": cgroupRoot,
		"failSwapOn": false,
		"address":    NodeIP,
		"port":       10250,
		// Served with a certificate of the cluster's CA; the API server
		// authenticates with its client certificate and may do anything.
		"tlsCertFile":       p.path("kubelet.crt"),
		"tlsPrivateKeyFile": p.path("kubelet.key"),
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": false},
			"x509":      map[string]any{"clientCAFile": p.path("ca.crt")},
		},
		"authorization":      map[string]any{"mode": "AlwaysAllow"},
		"readOnlyPort":       0,
		"healthzBindAddress": "127.0.0.1",
		// No DNS inside: pods get an empty resolv.conf, not the host's.
		"resolvConf": "",
		// The images are imported, never pulled: the kubelet must not
		// collect them, nor evict pods for the disk the machine's other
		// users fill.
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"evictionHard": map[string]string{
			"memory.available": "1Mi", "nodefs.available": "1Mi", "imagefs.available": "1Mi", "nodefs.inodesFree": "1", "imagefs.inodesFree": "1",
		},
		// Not under /usr/libexec on the host.
		"volumePluginDir": "/var/lib/kubelet/volume-plugins",
		// A ConfigMap change reaches a pod's volume on its next sync.
		"syncFrequency":             "10s",
		"nodeStatusUpdateFrequency": "2s",
		"shutdownGracePeriod":       "0s",
		"serializeImagePulls":       false,
	}
	proxy := map[string]any{
		"kind":               "KubeProxyConfiguration",
		"apiVersion":         "kubeproxy.config.k8s.io/v1alpha1",
		"clientConnection":   map[string]any{"kubeconfig": filepath.Join(w, "kube-proxy.kubeconfig")},
		"mode":               "iptables",
		"clusterCIDR":        PodCIDR,
		"hostnameOverride":   NodeName,
		"bindAddress":        NodeIP,
		"healthzBindAddress": "127.0.0.1:10256",
		"metricsBindAddress": "127.0.0.1:10249",
		// Zero: leave the conntrack table's size and timeouts alone
		// (nf_conntrack_max is the host's, shared by every namespace).
		"conntrack": map[string]any{
			"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s", "udpTimeout": "0s", "udpStreamTimeout": "0s",
		},
		"iptables":    map[string]any{"localhostNodePorts": false},
		"oomScoreAdj": 0,
	}
	for name, v := range map[string]any{"kubelet.json": kubelet, "kube-proxy.json": proxy} {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		files[name] = string(b)
	}
	for name, content := range files {
		f := filepath.Join(w, name)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(w, "init.sh"), []byte(initScript), 0o755); err != nil {
		return err
	}

	server := "https://127.0.0.1:6443"
	for _, k := range []struct{ file, cert string }{
		{"admin.kubeconfig", "admin"},
		{"kube-controller-manager.kubeconfig", "admin"},
		{"kube-scheduler.kubeconfig", "admin"},
		{"kubelet.kubeconfig", "kubelet-client"},
		{"kube-proxy.kubeconfig", "admin"},
	} {
		if err := p.kubeconfig(filepath.Join(w, k.file), k.cert, server); err != nil {
			return err
		}
	}
	return nil
}

// args returns the command line of each component.
func (c *Cluster) args(bins string, p *pki) map[string][]string {
	w := c.Dir
	bin := func(name string) string { return filepath.Join(bins, name) }
	return map[string][]string{
		"containerd": {"containerd", "--config", filepath.Join(w, "containerd.toml")},
		"etcd": {bin("etcd"), "--name=k8stest", "--data-dir=/var/lib/etcd",
			"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
			"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
			"--initial-cluster=k8stest=http://127.0.0.1:2380", "--log-level=warn",
			// A throw-away cluster: durability buys nothing and costs
			// seconds on a disk other tests are using.
			"--unsafe-no-fsync"},
		"kube-apiserver": {bin("kube-apiserver"), "--etcd-servers=http://127.0.0.1:2379",
			"--bind-address=0.0.0.0", "--secure-port=6443", "--advertise-address=" + NodeIP,
			"--service-cluster-ip-range=" + ServiceCIDR,
			"--cert-dir=" + filepath.Join(w, "pki", "apiserver"),
			"--tls-cert-file=" + p.path("apiserver.crt"), "--tls-private-key-file=" + p.path("apiserver.key"),
			"--client-ca-file=" + p.path("ca.crt"),
			"--kubelet-client-certificate=" + p.path("admin.crt"), "--kubelet-client-key=" + p.path("admin.key"),
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + p.path("sa.pub"), "--service-account-signing-key-file=" + p.path("sa.key"),
			"--authorization-mode=Node,RBAC", "--allow-privileged=true",
			// The node's name resolves nowhere: logs and exec go to its IP.
			"--kubelet-preferred-address-types=InternalIP",
			"--enable-priority-and-fairness=false", "--profiling=false", "--v=1"},
		"kube-controller-manager": {bin("kube-controller-manager"),
			"--kubeconfig=" + filepath.Join(w, "kube-controller-manager.kubeconfig"),
			"--bind-address=127.0.0.1", "--leader-elect=false", "--use-service-account-credentials=false",
			"--root-ca-file=" + p.path("ca.crt"), "--service-account-private-key-file=" + p.path("sa.key"),
			// Its default is under /usr/libexec, which it would create on
			// the host; /var/lib is the cluster's own.
			"--flex-volume-plugin-dir=/var/lib/kubelet/volume-plugins",
			"--profiling=false", "--v=1"},
		"kube-scheduler": {bin("kube-scheduler"), "--kubeconfig=" + filepath.Join(w, "kube-scheduler.kubeconfig"),
			"--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false", "--v=1"},
		"kubelet": {bin("kubelet"), "--config=" + filepath.Join(w, "kubelet.json"),
			"--kubeconfig=" + filepath.Join(w, "kubelet.kubeconfig"),
			"--node-ip=" + NodeIP, "--hostname-override=" + NodeName, "--root-dir=/var/lib/kubelet", "--v=1"},
		"kube-proxy": {bin("kube-proxy"), "--config=" + filepath.Join(w, "kube-proxy.json"), "--v=1"},
	}
}

// issueCerts writes the cluster's certificates and keys.
func issueCerts(p *pki) error {
	if err := p.issue("apiserver", "kube-apiserver", nil, "127.0.0.1", NodeIP, "10.96.0.1", "localhost",
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"); err != nil {
		return err
	}
	// Every component but the kubelet is a cluster administrator: this
	// cluster trusts all its parts, and RBAC's bootstrap roles need not
	// be waited for.
	if err := p.issue("admin", "handoff-k8stest-admin", []string{"system:masters"}); err != nil {
		return err
	}
	if err := p.issue("kubelet-client", "system:node:"+NodeName, []string{"system:nodes"}); err != nil {
		return err
	}
	if err := p.issue("kubelet", NodeName, nil, NodeIP, NodeName); err != nil {
		return err
	}
	return p.keyPair("sa")
}
