//go:build linux

package k8stest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/handoff-go/handoff/internal/k8stest"
)

func TestMain(m *testing.M) {
	k8stest.RunHelper(map[string]k8stest.Func{"hosts": hosts, "load": load})
	if os.Getenv(killedEnv) != "" {
		killedChild()
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// hostsArg is the argument of the helper hosts.
type hostsArg struct {
	URL  string
	Want int // distinct answers to wait for
	Max  int // requests at most
}

// hosts runs inside the cluster's network namespace: it sends GET url on a
// new connection each time, until it has seen Want distinct answers or
// sent Max requests, and returns the answers it saw with their counts.
func hosts(ctx context.Context, arg []byte) ([]byte, error) {
	var a hostsArg
	if err := json.Unmarshal(arg, &a); err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	seen := map[string]int{}
	for i := 0; i < a.Max && len(seen) < a.Want; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.URL, nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("request %d: %w", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		seen[strings.TrimSpace(string(b))]++
	}
	return json.Marshal(seen)
}

const manifests = `
apiVersion: v1
kind: ConfigMap
metadata:
  name: hello
  namespace: default
data:
  config.txt: "version 1"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  labels:
    app: hello
spec:
  replicas: 3
  selector:
    matchLabels:
      app: hello
  strategy:
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        app: hello
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 5
      containers:
      - name: hello
        image: handoff.local/k8stest/hello:1
        imagePullPolicy: Never
        env:
        - name: CONFIG_FILE
          value: /config/config.txt
        ports:
        - containerPort: 8080
        readinessProbe:
          httpGet:
            path: /healthz
            port: 8080
          periodSeconds: 1
        volumeMounts:
        - name: config
          mountPath: /config
      volumes:
      - name: config
        configMap:
          name: hello
---
apiVersion: v1
kind: Service
metadata:
  name: hello
spec:
  selector:
    app: hello
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: hello
spec:
  minAvailable: 2
  selector:
    matchLabels:
      app: hello
`

// stubborn ignores SIGTERM: the kubelet SIGKILLs it when its 1 s grace
// period ends.
const stubborn = `{
  "apiVersion": "apps/v1", "kind": "Deployment",
  "metadata": {"name": "stubborn"},
  "spec": {
    "replicas": 1,
    "selector": {"matchLabels": {"app": "stubborn"}},
    "template": {
      "metadata": {"labels": {"app": "stubborn"}},
      "spec": {
        "automountServiceAccountToken": false,
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "stubborn", "image": "handoff.local/k8stest/hello:1", "imagePullPolicy": "Never",
          "args": ["-ignore-sigterm"]}]
      }
    }
  }
}`

// TestCluster boots a cluster, serves a Deployment of 3 replicas behind
// a Service, checks that a client inside the namespace reaches each pod
// through the Service's cluster IP, drives the operations the acceptance
// tests need, then tears the cluster down and checks the host is as it
// was.
func TestCluster(t *testing.T) {
	// The picture of the host is taken once this cluster holds the
	// machine: another one (of a test running in parallel elsewhere) may
	// have changed the kubelet's sysctls until then.
	var before hostState
	cache, _ := os.UserCacheDir()
	var dir, netns string
	// Registered before New's Close, so it runs after it.
	t.Cleanup(func() {
		if dir == "" {
			return
		}
		assert.Empty(t, leftovers(dir, filepath.Join(cache, "handoff-k8stest"), netns), "processes, namespaces or files of the cluster left")
		assert.Empty(t, before.diff(readHost(t)), "the host changed")
	})

	start := time.Now()
	c := k8stest.New(t, k8stest.Options{Locked: func() { before = readHost(t) }})
	dir = c.Dir
	t.Logf("cluster up in %s (lock %s, build %s cached=%v, boot %s)", time.Since(start).Round(time.Millisecond),
		c.Timings.Lock.Round(time.Millisecond), c.Timings.Build.Round(time.Millisecond), c.Timings.Cached, c.Timings.Boot.Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	out, err := c.Command(ctx, "readlink", "/proc/self/ns/net").Output()
	require.NoError(t, err)
	netns = strings.TrimSpace(string(out))
	require.True(t, strings.HasPrefix(netns, "net:["), netns)
	hostNS, _ := os.Readlink("/proc/self/ns/net")
	require.NotEqual(t, hostNS, netns)

	bin := filepath.Join(t.TempDir(), "hello")
	require.NoError(t, k8stest.BuildStatic(ctx, "./testdata/hello", bin))
	require.NoError(t, c.ImportImage(ctx, "handoff.local/k8stest/hello:1", bin))

	step := time.Now()
	require.NoError(t, c.Apply(ctx, manifests))
	require.NoError(t, c.WaitRollout(ctx, "default", "hello"))
	t.Logf("3 replicas rolled out %s after Apply", time.Since(step).Round(time.Millisecond))
	pods, err := c.Pods(ctx, "default", "app=hello")
	require.NoError(t, err)
	require.Len(t, pods, 3)
	names := map[string]int{}
	for _, p := range pods {
		names[p.Name] = 0
	}

	ip, err := c.WaitService(ctx, "default", "hello", 3)
	require.NoError(t, err)
	t.Logf("kube-proxy routes %s to the 3 pods %s after Apply", ip, time.Since(step).Round(time.Millisecond))
	t.Run("service reaches every pod", func(t *testing.T) {
		arg, _ := json.Marshal(hostsArg{URL: "http://" + ip + "/host", Want: 3, Max: 300})
		res, err := c.Call(ctx, "hosts", arg)
		require.NoError(t, err)
		var seen map[string]int
		require.NoError(t, json.Unmarshal(res, &seen))
		t.Logf("answers through %s (cluster IP of Service hello): %v", ip, seen)
		got := map[string]int{}
		for name := range seen {
			got[name] = 0
		}
		assert.Equal(t, names, got, "each pod, and only they, answered")

		// The same from this process, through Dial.
		hc := c.HTTPClient()
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("http://" + ip + "/host")
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Contains(t, names, strings.TrimSpace(string(b)))
	})

	t.Run("logs and events", func(t *testing.T) {
		logs, err := c.Logs(ctx, "default", pods[0].Name, "", false)
		require.NoError(t, err)
		assert.Contains(t, logs, "hello: serving on :8080 as "+pods[0].Name)
		evs, err := c.Events(ctx, "default")
		require.NoError(t, err)
		var started int
		for _, e := range evs {
			if e.Kind == "Pod" && e.Reason == "Started" {
				started++
			}
		}
		assert.GreaterOrEqual(t, started, 3, "Started events of the pods")
	})

	t.Run("rollout restart", func(t *testing.T) {
		step := time.Now()
		require.NoError(t, c.RolloutRestart(ctx, "default", "hello"))
		require.NoError(t, c.WaitRollout(ctx, "default", "hello"))
		after, err := c.WaitPods(ctx, "default", "app=hello", settled(3))
		require.NoError(t, err)
		for _, p := range after {
			assert.NotContains(t, names, p.Name, "a pod of the old template is left")
		}
		t.Logf("rolled out and settled in %s", time.Since(step).Round(time.Millisecond))
	})

	t.Run("configmap", func(t *testing.T) {
		step := time.Now()
		require.NoError(t, c.UpdateConfigMap(ctx, "default", "hello", map[string]string{"config.txt": "version 2"}))
		pods, err := c.Pods(ctx, "default", "app=hello")
		require.NoError(t, err)
		hc := c.HTTPClient()
		defer hc.CloseIdleConnections()
		for _, p := range pods {
			require.Eventually(t, func() bool {
				resp, err := hc.Get("http://" + p.IP + ":8080/config")
				if err != nil {
					return false
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return string(b) == "version 2"
			}, time.Minute, 200*time.Millisecond, "pod %s never saw the new ConfigMap", p.Name)
		}
		t.Logf("the ConfigMap's update reached the 3 pods in %s", time.Since(step).Round(time.Millisecond))
	})

	t.Run("delete pod", func(t *testing.T) {
		pods, err := c.Pods(ctx, "default", "app=hello")
		require.NoError(t, err)
		require.NoError(t, c.DeletePod(ctx, "default", pods[0].Name))
		after, err := c.WaitPods(ctx, "default", "app=hello", settled(3))
		require.NoError(t, err)
		for _, p := range after {
			assert.NotEqual(t, pods[0].Name, p.Name)
		}
	})

	t.Run("drain through the budget", func(t *testing.T) {
		pods, err := c.Pods(ctx, "default", "app=hello")
		require.NoError(t, err)
		// The budget (2 of 3 available) lets one eviction through at a
		// time; a second one at once is refused.
		require.NoError(t, c.Evict(ctx, "default", pods[0].Name))
		err = c.Evict(ctx, "default", pods[1].Name)
		assert.ErrorIs(t, err, k8stest.ErrDisruptionBudget)
		step := time.Now()
		require.NoError(t, c.Drain(ctx, "default", "app=hello"))
		after, err := c.WaitPods(ctx, "default", "app=hello", settled(3))
		require.NoError(t, err)
		for _, p := range after {
			for _, old := range pods {
				assert.NotEqual(t, old.Name, p.Name)
			}
		}
		t.Logf("drained 3 pods through the budget in %s", time.Since(step).Round(time.Millisecond))
	})

	t.Run("sigkill seen", func(t *testing.T) {
		require.NoError(t, c.Apply(ctx, stubborn))
		require.NoError(t, c.WaitRollout(ctx, "default", "stubborn"))
		w, err := c.WatchTerminations(ctx, "default", "app=stubborn")
		require.NoError(t, err)
		pods, err := c.Pods(ctx, "default", "app=stubborn")
		require.NoError(t, err)
		require.Len(t, pods, 1)
		require.NoError(t, c.DeletePod(ctx, "default", pods[0].Name))
		_, err = c.WaitPods(ctx, "default", "app=stubborn", func(ps []k8stest.Pod) bool {
			for _, p := range ps {
				if p.Name == pods[0].Name {
					return false
				}
			}
			return true
		})
		require.NoError(t, err)
		terms, err := w.Stop()
		require.NoError(t, err)
		require.Len(t, terms, 1, "one termination")
		assert.True(t, terms[0].Killed(), "SIGKILLed: %v", terms[0])
		t.Logf("termination recorded: %v", terms[0])
		_, err = w.Stop()
		require.NoError(t, err, "Stop is idempotent")
		evs, err := c.Events(ctx, "default")
		require.NoError(t, err)
		killing := false
		for _, e := range evs {
			killing = killing || e.Name == pods[0].Name && e.Reason == "Killing"
		}
		assert.True(t, killing, "a Killing event for %s", pods[0].Name)
	})
}

// settled is true for exactly n pods, all ready and none terminating.
func settled(n int) func([]k8stest.Pod) bool {
	return func(ps []k8stest.Pod) bool {
		if len(ps) != n {
			return false
		}
		for _, p := range ps {
			if !p.Ready || p.Deleting {
				return false
			}
		}
		return true
	}
}

// killedEnv makes the test binary killedChild.
const killedEnv = "HANDOFF_K8STEST_KILLED_CHILD"

// killedChild starts a cluster with a pod running, prints the cluster's
// work directory and waits to be killed.
func killedChild() {
	ctx := context.Background()
	c, err := k8stest.Start(ctx, k8stest.Options{Lifetime: 5 * time.Minute})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	err = c.Apply(ctx, `{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "pause"},
	  "spec": {"selector": {"matchLabels": {"app": "pause"}}, "template": {"metadata": {"labels": {"app": "pause"}},
	  "spec": {"automountServiceAccountToken": false, "containers": [{"name": "pause", "image": "handoff.local/k8stest/pause:1", "imagePullPolicy": "Never"}]}}}}`)
	if err == nil {
		err = c.WaitRollout(ctx, "default", "pause")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(c.Dir)
	select {}
}

// TestKilledCluster kills a process that runs a cluster (with a pod) and
// checks that every process of the cluster dies with it, and that the
// next Start sweeps what it left: its cgroups, work directory and the
// kernel settings the kubelet changed.
func TestKilledCluster(t *testing.T) {
	k8stest.RequireAvailable(t)
	before := readHost(t)
	cache, _ := os.UserCacheDir()
	bins := filepath.Join(cache, "handoff-k8stest")

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killedEnv+"=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(l)
	}()
	// The child builds the binaries when they are not cached: wait as
	// long as the test may.
	wait := 10 * time.Minute
	if deadline, ok := t.Deadline(); ok {
		wait = time.Until(deadline) - time.Minute
	}
	var dir string
	select {
	case dir = <-line:
	case <-time.After(wait):
	}
	if dir == "" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait() // stderr is complete only now
		killed = true
		t.Fatalf("the child did not start its cluster:\n%s", stderr.String())
	}
	require.NotEmpty(t, leftovers(dir, bins, ""), "the child's cluster runs")

	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	killed = true
	require.Eventually(t, func() bool {
		for _, l := range leftovers(dir, bins, "") {
			if strings.HasPrefix(l, "process ") {
				return false
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond, "the cluster's processes outlived the killed test: %v", leftovers(dir, bins, ""))
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/" + filepath.Base(dir))
	require.NotEmpty(t, cgroups, "the killed cluster's cgroups are left for the sweep")

	c, err := k8stest.Start(context.Background(), k8stest.Options{Logf: t.Logf})
	require.NoError(t, err)
	assert.NoDirExists(t, dir, "swept")
	cgroups, _ = filepath.Glob("/sys/fs/cgroup/*/" + filepath.Base(dir))
	assert.Empty(t, cgroups, "swept")
	newDir := c.Dir
	require.NoError(t, c.Close())
	assert.Empty(t, leftovers(newDir, bins, ""))
	assert.Empty(t, before.diff(readHost(t)), "the host changed")
}
