//go:build linux

package k8stest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/internal/k8stest"
	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// The acceptance of Kubernetes rolling updates (issue 11 a–e): 3 replicas
// of examples/kubernetes behind a Service, under upgradertest's load (its
// clients never retry) sent from inside the cluster's network namespace to
// the Service's cluster IP, so every request goes through kube-proxy's
// iptables rules as a client pod's would.
const (
	// policyDelay is the policy's ShutdownDelay: kube-proxy's iptables
	// update takes its minimum sync period (1 s) after the endpoint
	// slice's change, itself after the API's; 5 s covers both with room
	// on a loaded machine.
	policyDelay = 5 * time.Second
	// drainTimeout and gracePeriod (terminationGracePeriodSeconds): the
	// grace period exceeds delay + drain timeout, as the server checks.
	drainTimeout = 20 * time.Second
	gracePeriod  = 30 * time.Second
	// rollouts is the number of rollout restarts of a and of b.
	rollouts = 3
)

// The objects of examples/kubernetes/deploy.yaml, the manifests a user
// copies, applied as they are (with the image built from main.go under the
// name they give), and the control made from them.
const (
	deployYAML = "../../examples/kubernetes/deploy.yaml"
	// web is the name of every object of deploy.yaml, and its pods' app
	// label.
	web = "handoff-example"
	// control is the name of the control's objects: deploy.yaml's
	// ConfigMap, Deployment and Service with ShutdownDelay 0 and no preStop
	// (the server drains as soon as the kubelet's SIGTERM arrives), and no
	// budget.
	control = "handoff-control"
	// serverImage is the image deploy.yaml names.
	serverImage = "handoff.local/examples/kubernetes:1"
)

// preStopHook is deploy.yaml's preStop hook, which the control drops.
var preStopHook = regexp.MustCompile(`\n +lifecycle:\n +preStop:\n +httpGet:\n +path: /prestop\n +port: health\n`)

// exampleManifests reads deploy.yaml and returns it (web) and the
// control's objects. It checks the settings the test's figures depend on,
// so that a change of deploy.yaml that alters them fails here, not later.
func exampleManifests(t *testing.T) (webYAML, controlYAML string) {
	t.Helper()
	b, err := os.ReadFile(deployYAML)
	require.NoError(t, err)
	webYAML = string(b)
	for _, want := range []string{"image: " + serverImage, "replicas: 3", "maxUnavailable: 0", "-shutdown-delay=" + policyDelay.String(),
		"-drain-timeout=" + drainTimeout.String(), "-grace-period=" + gracePeriod.String(),
		fmt.Sprintf("terminationGracePeriodSeconds: %d", int(gracePeriod.Seconds())), "-log-json", "path: /prestop", "kind: PodDisruptionBudget"} {
		require.Contains(t, webYAML, want, "%s changed: the test depends on it", deployYAML)
	}
	require.Len(t, preStopHook.FindAllString(webYAML, -1), 1, "deploy.yaml's preStop hook")
	var docs []string
	for _, doc := range strings.Split(webYAML, "\n---\n") {
		if !strings.Contains(doc, "\nkind: PodDisruptionBudget\n") {
			docs = append(docs, doc)
		}
	}
	controlYAML = strings.Join(docs, "\n---\n")
	controlYAML = strings.ReplaceAll(controlYAML, web, control)
	controlYAML = strings.Replace(controlYAML, "-shutdown-delay="+policyDelay.String(), "-shutdown-delay=0s", 1)
	controlYAML = preStopHook.ReplaceAllString(controlYAML, "\n")
	require.NotContains(t, controlYAML, "prestop")
	return webYAML, controlYAML
}

// loadArg is the argument of the helper load.
type loadArg struct {
	Addr string // the Service's cluster IP and port
	// Running, if set, is a file the helper creates once every kind of
	// client has had a response: the load is on.
	Running string
	// Stop, if set, is a FIFO: the load ends when its writer closes it.
	// (Call's ctx ends it too, but leaves 5 s for the rest: too little for
	// a request that waits for its timeout, as the control's do.)
	Stop string
}

// loadReport is the helper load's result: what the test asserts on and
// logs (the samples themselves stay in the helper).
type loadReport struct {
	Summary              string
	Requests, Failed     int
	Failures             map[string]int
	Streams, StreamsDone int
	FirstFailures        string
	Check                string // Result.Check's error, "" if none
}

// load runs inside the cluster's network namespace: upgradertest's
// acceptance mix (keep-alive checked and blind, a new connection per
// request, slow requests, 3 s streams; no client retries) on arg's
// address until the test closes arg's Stop FIFO (or ctx ends).
func load(ctx context.Context, arg []byte) ([]byte, error) {
	var a loadArg
	if err := json.Unmarshal(arg, &a); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if a.Stop != "" {
		go func() {
			// Blocks until the test opens the FIFO, then until it closes
			// it. Left blocked if ctx ends first: the process exits then.
			f, err := os.Open(a.Stop)
			if err != nil {
				fmt.Fprintln(os.Stderr, "load: no stop FIFO:", err)
				return
			}
			_, _ = io.Copy(io.Discard, f)
			f.Close()
			cancel()
		}()
	}
	cfg := upgradertest.MixedConfig(a.Addr)
	var mu sync.Mutex
	answered := map[upgradertest.Kind]bool{}
	created := false
	cfg.OnSample = func(s upgradertest.Sample) {
		if s.Class != upgradertest.OK {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		answered[s.Kind] = true
		if !created && a.Running != "" && len(answered) == len(cfg.Workers) {
			created = true
			_ = os.WriteFile(a.Running, nil, 0o600)
		}
	}
	res := upgradertest.Run(ctx, cfg)
	r := loadReport{Summary: res.Summary(), Requests: len(res.Samples), Failed: res.Failed(), Failures: map[string]int{},
		FirstFailures: res.FirstFailures(20)}
	for class, n := range res.Failures() {
		r.Failures[class.String()] = n
	}
	for _, s := range res.Samples {
		if s.Kind == upgradertest.Stream {
			r.Streams++
			if s.Class == upgradertest.OK {
				r.StreamsDone++
			}
		}
	}
	if err := res.Check(cfg); err != nil {
		r.Check = err.Error()
	}
	return json.Marshal(r)
}

// startLoad puts the load on the Service svc (once kube-proxy sends it to
// its 3 endpoints) and returns when every kind of client has had an
// answer. stop ends the load and returns its report.
func startLoad(ctx context.Context, t *testing.T, c *k8stest.Cluster, svc string) (stop func() loadReport) {
	t.Helper()
	ip, err := c.WaitService(ctx, "default", svc, 3)
	require.NoError(t, err)
	dir := t.TempDir()
	running, fifo := filepath.Join(dir, "running"), filepath.Join(dir, "stop")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	arg, err := json.Marshal(loadArg{Addr: ip + ":80", Running: running, Stop: fifo})
	require.NoError(t, err)
	loadCtx, cancel := context.WithCancel(ctx)
	var out []byte
	var callErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		out, callErr = c.Call(loadCtx, "load", arg)
	}()
	t.Cleanup(func() { cancel(); <-done }) // a test that failed before stop
	stop = func() loadReport {
		// The helper holds the FIFO open for reading: an open for writing
		// that does not block, closed at once, is its EOF. Without a
		// reader (the helper is gone), the open fails and ctx ends it.
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		} else {
			cancel()
		}
		<-done
		require.NoError(t, callErr, "the load")
		var rep loadReport
		require.NoError(t, json.Unmarshal(out, &rep))
		t.Logf("load on Service %s (%s): %s", svc, ip, rep.Summary)
		return rep
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(time.Minute)
	for {
		if _, err := os.Stat(running); err == nil {
			return stop
		}
		select {
		case <-done:
			t.Fatalf("the load ended before it was on: %v", callErr)
		case <-timeout:
			t.Fatal("no answer to every kind of client within a minute")
		case <-tick.C:
		}
	}
}

// checkLoad asserts that the load lost nothing: no failed request, every
// kind of client served, every stream whole.
func checkLoad(t *testing.T, rep loadReport) {
	t.Helper()
	assert.Zero(t, rep.Failed, "failed requests: %v\n%s", rep.Failures, rep.FirstFailures)
	assert.Empty(t, rep.Check)
	assert.Positive(t, rep.Streams, "streams")
	assert.Equal(t, rep.Streams, rep.StreamsDone, "every stream complete")
}

// watchTerminations records the terminations of the pods app=app; the
// returned func waits (bounded) until it has seen n, stops the watch and
// returns them.
func watchTerminations(ctx context.Context, t *testing.T, c *k8stest.Cluster, app string) func(n int) []k8stest.Termination {
	t.Helper()
	w, err := c.WatchTerminations(ctx, "default", "app="+app)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = w.Stop() })
	return func(n int) []k8stest.Termination {
		t.Helper()
		// The kubelet reports a container's end before it deletes its
		// pod, but the watch may trail the list that saw the pod gone.
		assert.Eventually(t, func() bool { return len(w.Terminations()) >= n }, 30*time.Second, 100*time.Millisecond,
			"%d terminations of app=%s", n, app)
		terms, err := w.Stop()
		require.NoError(t, err)
		return terms
	}
}

// checkTerminations asserts that each termination is a clean exit: no
// SIGKILL (the grace period ran out), status 0.
func checkTerminations(t *testing.T, terms []k8stest.Termination) {
	t.Helper()
	for _, term := range terms {
		assert.False(t, term.Killed(), "SIGKILLed: %v", term)
		assert.Zero(t, term.ExitCode, "exit status: %v", term)
	}
}

// rolloutRestarts restarts the Deployment name n times, each time waiting
// until it has rolled out and its old pods are gone (the old pods' drains
// are part of what the load sees).
func rolloutRestarts(ctx context.Context, t *testing.T, c *k8stest.Cluster, name string, n int) {
	t.Helper()
	for i := range n {
		step := time.Now()
		require.NoError(t, c.RolloutRestart(ctx, "default", name))
		require.NoError(t, c.WaitRollout(ctx, "default", name))
		rolled := time.Since(step)
		_, err := c.WaitPods(ctx, "default", "app="+name, settled(3))
		require.NoError(t, err)
		t.Logf("rollout restart %d of %s: rolled out in %s, old pods gone in %s", i+1, name,
			rolled.Round(time.Millisecond), time.Since(step).Round(time.Millisecond))
	}
}

// greetings asks each pod (by its address, port 8080) for /greeting and
// returns the answers by pod name.
func greetings(ctx context.Context, c *k8stest.Cluster, pods []k8stest.Pod) (map[string]string, error) {
	hc := c.HTTPClient()
	defer hc.CloseIdleConnections()
	got := map[string]string{}
	for _, p := range pods {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.IP+":8080/greeting", nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("pod %s: %s: %s", p.Name, resp.Status, b)
		}
		got[p.Name] = strings.TrimSpace(string(b))
	}
	return got, nil
}

// TestKubernetesAcceptance is issue 11's acceptance on one cluster: a
// (rollout restarts with the termination policy lose nothing), b (the
// control without it loses requests), c (a drain through the budget and a
// pod deleted by hand lose nothing), d (a ConfigMap update is hot-swapped
// with no restart), e on the cluster (a preStop call, then the kubelet's
// own and its SIGTERM: one drain, exit 0). The package documentation says
// how.
func TestKubernetesAcceptance(t *testing.T) {
	start := time.Now()
	c := k8stest.New(t, k8stest.Options{})
	t.Logf("cluster up in %s (lock %s, build %s cached=%v, boot %s)", time.Since(start).Round(time.Millisecond), c.Timings.Lock.Round(time.Millisecond),
		c.Timings.Build.Round(time.Millisecond), c.Timings.Cached, c.Timings.Boot.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()

	step := time.Now()
	bin := filepath.Join(t.TempDir(), "server")
	require.NoError(t, k8stest.BuildStatic(ctx, "../../examples/kubernetes", bin))
	require.NoError(t, c.ImportImage(ctx, serverImage, bin))
	t.Logf("examples/kubernetes built and imported in %s", time.Since(step).Round(time.Millisecond))

	step = time.Now()
	webYAML, controlYAML := exampleManifests(t)
	require.NoError(t, c.Apply(ctx, webYAML+"\n---\n"+controlYAML))
	require.NoError(t, c.WaitRollout(ctx, "default", web))
	require.NoError(t, c.WaitRollout(ctx, "default", control))
	t.Logf("%s (deploy.yaml: the policy) and %s (the control) rolled out %s after Apply", web, control, time.Since(step).Round(time.Millisecond))

	var withPolicy, withoutPolicy loadReport
	t.Run("a rollout restarts with the policy", func(t *testing.T) {
		terms := watchTerminations(ctx, t, c, web)
		stop := startLoad(ctx, t, c, web)
		rolloutRestarts(ctx, t, c, web, rollouts)
		withPolicy = stop()
		checkLoad(t, withPolicy)
		got := terms(3 * rollouts)
		assert.Len(t, got, 3*rollouts, "one termination per old pod")
		checkTerminations(t, got)
	})

	t.Run("b the control without it", func(t *testing.T) {
		terms := watchTerminations(ctx, t, c, control)
		stop := startLoad(ctx, t, c, control)
		rolloutRestarts(ctx, t, c, control, rollouts)
		withoutPolicy = stop()
		assert.Positive(t, withoutPolicy.Failed, "the control lost no request: the test cannot see the problem")
		t.Logf("the control's failures: %v\n%s", withoutPolicy.Failures, withoutPolicy.FirstFailures)
		for _, term := range terms(3 * rollouts) {
			t.Logf("control termination: %v", term)
		}
		// Its pods go, so that what follows has the machine to itself.
		require.NoError(t, c.Delete(ctx, "/apis/apps/v1/namespaces/default/deployments/"+control))
		_, err := c.WaitPods(ctx, "default", "app="+control, func(ps []k8stest.Pod) bool { return len(ps) == 0 })
		require.NoError(t, err)
	})
	if withPolicy.Requests > 0 && withoutPolicy.Requests > 0 {
		t.Logf("issue 11 a/b, %d rollout restarts of 3 replicas each under the same load: "+
			"with the policy (ShutdownDelay %s, preStop) %d failed of %d requests; "+
			"without it (ShutdownDelay 0, no preStop) %d failed of %d %v",
			rollouts, policyDelay, withPolicy.Failed, withPolicy.Requests, withoutPolicy.Failed, withoutPolicy.Requests, withoutPolicy.Failures)
	}

	t.Run("c drain through the budget and a pod deleted", func(t *testing.T) {
		terms := watchTerminations(ctx, t, c, web)
		before, err := c.Pods(ctx, "default", "app="+web)
		require.NoError(t, err)
		require.Len(t, before, 3)
		var pdb struct {
			Status struct{ DisruptionsAllowed int }
		}
		require.NoError(t, c.Get(ctx, "/apis/policy/v1/namespaces/default/poddisruptionbudgets/"+web, &pdb))
		require.Equal(t, 1, pdb.Status.DisruptionsAllowed, "the budget lets one pod of 3 go at a time")
		stop := startLoad(ctx, t, c, web)

		// The node is the cluster's only one: kubectl drain would cordon
		// it, and the Deployment's replacements, with nowhere to go, would
		// leave the budget blocking the drain for ever. So the drain is
		// the eviction of every pod of the node through the budget, all
		// asked at once and refused (429) while the budget has no room,
		// with the replacements landing on the same node: one pod at a
		// time goes, as on a node of a cluster with room elsewhere.
		step := time.Now()
		require.NoError(t, c.Drain(ctx, "default", "app="+web))
		after, err := c.WaitPods(ctx, "default", "app="+web, settled(3))
		require.NoError(t, err)
		for _, p := range after {
			for _, old := range before {
				assert.NotEqual(t, old.UID, p.UID, "pod %s was not evicted", old.Name)
			}
		}
		t.Logf("drained the 3 pods through the budget in %s", time.Since(step).Round(time.Millisecond))

		step = time.Now()
		require.NoError(t, c.DeletePod(ctx, "default", after[0].Name))
		_, err = c.WaitPods(ctx, "default", "app="+web, func(ps []k8stest.Pod) bool {
			for _, p := range ps {
				if p.UID == after[0].UID {
					return false
				}
			}
			return settled(3)(ps)
		})
		require.NoError(t, err)
		t.Logf("deleted pod %s, replaced and gone in %s", after[0].Name, time.Since(step).Round(time.Millisecond))

		checkLoad(t, stop())
		got := terms(4)
		assert.Len(t, got, 4, "one termination per evicted or deleted pod")
		checkTerminations(t, got)
	})

	t.Run("d configmap hot swap", func(t *testing.T) {
		before, err := c.WaitPods(ctx, "default", "app="+web, settled(3))
		require.NoError(t, err)
		old, err := greetings(ctx, c, before)
		require.NoError(t, err)
		for name, g := range old {
			require.True(t, strings.HasPrefix(g, "hello from "), "pod %s: %q", name, g)
		}
		stop := startLoad(ctx, t, c, web)

		step := time.Now()
		require.NoError(t, c.UpdateConfigMap(ctx, "default", web, map[string]string{"flags.json": `{"greeting": "bonjour"}`}))
		// The kubelet writes the new file into each pod's volume on its
		// next sync of the pod (a new timestamped directory, then the
		// ..data symlink renamed over), and the server's watcher swaps it.
		var got map[string]string
		require.Eventually(t, func() bool {
			got, err = greetings(ctx, c, before)
			if err != nil {
				return false
			}
			for _, g := range got {
				if !strings.HasPrefix(g, "bonjour from ") {
					return false
				}
			}
			return true
		}, 2*time.Minute, 200*time.Millisecond, "every pod serves the new value: %v (%v)", got, err)
		t.Logf("the ConfigMap's new value served by the 3 pods %s after the update: %v", time.Since(step).Round(time.Millisecond), got)

		checkLoad(t, stop())
		after, err := c.Pods(ctx, "default", "app="+web)
		require.NoError(t, err)
		require.Len(t, after, 3)
		uids := map[string]bool{}
		for _, p := range before {
			uids[p.UID] = true
		}
		for _, p := range after {
			assert.True(t, uids[p.UID], "pod %s is new", p.Name)
			assert.True(t, p.Ready && !p.Deleting, "pod %s ready", p.Name)
			for _, cs := range p.Containers {
				assert.Zero(t, cs.RestartCount, "pod %s container %s restarted", p.Name, cs.Name)
			}
		}
	})

	t.Run("e prestop twice then SIGTERM", func(t *testing.T) {
		pods, err := c.WaitPods(ctx, "default", "app="+web, settled(3))
		require.NoError(t, err)
		p := pods[0]
		terms := watchTerminations(ctx, t, c, web)
		stop := startLoad(ctx, t, c, web)

		// The log, followed to the container's end.
		var logs []byte
		var logErr error
		logDone := make(chan struct{})
		go func() {
			defer close(logDone)
			logErr = c.Get(ctx, "/api/v1/namespaces/default/pods/"+p.Name+"/log?follow=true", &logs)
		}()

		// A first preStop call of our own, then the pod's deletion: the
		// kubelet calls the hook again, then sends SIGTERM once it has
		// returned.
		hc := &http.Client{Transport: &http.Transport{DialContext: c.Dial}}
		defer hc.CloseIdleConnections()
		var answer string
		var callErr error
		called := time.Now()
		var took time.Duration
		callDone := make(chan struct{})
		go func() {
			defer close(callDone)
			cctx, cancel := context.WithTimeout(ctx, gracePeriod)
			defer cancel()
			req, err := http.NewRequestWithContext(cctx, http.MethodGet, "http://"+p.IP+":8081/prestop", nil)
			if err != nil {
				callErr = err
				return
			}
			resp, err := hc.Do(req)
			if err != nil {
				callErr = err
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			took = time.Since(called)
			answer, callErr = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b))), err
		}()
		require.NoError(t, c.DeletePod(ctx, "default", p.Name))
		<-callDone
		require.NoError(t, callErr)
		assert.Equal(t, "200 drained", answer, "our preStop call")
		assert.GreaterOrEqual(t, took, policyDelay, "our preStop call returned before the delay was over")
		_, err = c.WaitPods(ctx, "default", "app="+web, func(ps []k8stest.Pod) bool {
			for _, q := range ps {
				if q.UID == p.UID {
					return false
				}
			}
			return settled(3)(ps)
		})
		require.NoError(t, err)
		<-logDone
		require.NoError(t, logErr)
		checkLoad(t, stop())
		got := terms(1)
		require.Len(t, got, 1)
		checkTerminations(t, got)

		// What the server said: two preStop calls, one stop, one drain,
		// an exit.
		count := map[string]int{}
		for _, line := range strings.Split(string(logs), "\n") {
			var rec struct{ Msg string }
			if json.Unmarshal([]byte(line), &rec) == nil {
				count[rec.Msg]++
			}
		}
		t.Logf("pod %s: our preStop call answered %q after %s; its log: %v", p.Name, answer, took.Round(time.Millisecond), count)
		assert.Equal(t, 2, count["health: prestop called"], "preStop calls")
		assert.Equal(t, 1, count["health: stopping"], "stops")
		assert.Equal(t, 1, count["health: draining"], "drains")
		assert.Equal(t, 1, count["health: drained"], "drains over")
		assert.Equal(t, 1, count["handoff: exiting"], "exits")
		assert.Zero(t, count["health: grace period too short"])
		evs, err := c.Events(ctx, "default")
		require.NoError(t, err)
		for _, e := range evs {
			if e.Name == p.Name {
				assert.NotEqual(t, "FailedPreStopHook", e.Reason, "%s: %s", e.Reason, e.Message)
			}
		}
	})

	if !t.Failed() {
		t.Logf("acceptance done in %s (cluster start included)", time.Since(start).Round(time.Millisecond))
	}
}
