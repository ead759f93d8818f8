package k8stest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Cluster is a running cluster: one node in its own network namespace.
// The methods that talk to the API server do it as a cluster
// administrator (system:masters), each bounded by its ctx (and by
// DefaultRequestTimeout where ctx has no deadline). All methods are safe
// for concurrent use.
type Cluster struct {
	// Dir is the cluster's work directory on the host: configuration,
	// certificates and the components' logs (LogFile). It is removed by
	// Close.
	Dir string
	// Timings are how long Start took, by phase.
	Timings Timings

	api *apiClient
	n   *node
}

// DefaultRequestTimeout bounds an API request whose ctx has no deadline.
const DefaultRequestTimeout = time.Minute

// components are the cluster's processes, in the order they start.
var components = []string{"containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"}

// Components returns the names of the cluster's processes, for LogFile.
func (c *Cluster) Components() []string { return append([]string(nil), components...) }

// LogFile returns the file that holds the output of the component name.
func (c *Cluster) LogFile(name string) string { return filepath.Join(c.Dir, "logs", name+".log") }

// APIError is the API server's answer to a request that failed: its HTTP
// status code and the Status object's reason and message.
type APIError struct {
	Method, Path string
	Code         int
	Reason       string
	Message      string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("k8stest: %s %s: %d %s: %s", e.Method, e.Path, e.Code, e.Reason, e.Message)
}

// ErrDisruptionBudget: the eviction was refused because it would break a
// PodDisruptionBudget (the API's 429). Evict returns it wrapped.
var ErrDisruptionBudget = errors.New("k8stest: eviction refused by a PodDisruptionBudget")

type apiClient struct {
	base string
	hc   *http.Client

	mu    sync.Mutex
	kinds map[string]resource // "apps/v1 Deployment"
}

type resource struct {
	name       string
	namespaced bool
}

// request sends one request. body, unless it is a []byte, is sent as JSON.
func (c *Cluster) request(ctx context.Context, method, path, contentType string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				return nil, err
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.api.base+path, rd)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.api.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("k8stest: %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		e := &APIError{Method: method, Path: path, Code: resp.StatusCode}
		var st struct{ Reason, Message string }
		if json.Unmarshal(b, &st) == nil && st.Message != "" {
			e.Reason, e.Message = st.Reason, st.Message
		} else {
			e.Message = strings.TrimSpace(string(b))
		}
		return nil, e
	}
	return resp, nil
}

// Do sends a request to the API server and decodes the JSON answer into
// out (unless out is nil). body is sent as JSON unless it is a []byte;
// contentType defaults to application/json. ctx bounds it (and
// DefaultRequestTimeout where ctx has no deadline). A failure the server
// reports is an *APIError.
func (c *Cluster) Do(ctx context.Context, method, path, contentType string, body, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultRequestTimeout)
		defer cancel()
	}
	if contentType == "" && body != nil {
		contentType = "application/json"
	}
	resp, err := c.request(ctx, method, path, contentType, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if b, ok := out.(*[]byte); ok {
		*b, err = io.ReadAll(resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Get reads the object at path (for example
// "/apis/apps/v1/namespaces/default/deployments/web") into out.
func (c *Cluster) Get(ctx context.Context, path string, out any) error {
	return c.Do(ctx, http.MethodGet, path, "", nil, out)
}

// Patch applies a JSON merge patch (RFC 7386) to the object at path.
func (c *Cluster) Patch(ctx context.Context, path string, patch any) error {
	return c.Do(ctx, http.MethodPatch, path, "application/merge-patch+json", patch, nil)
}

// Delete deletes the object at path, with its default grace period.
func (c *Cluster) Delete(ctx context.Context, path string) error {
	return c.Do(ctx, http.MethodDelete, path, "", nil, nil)
}

// Apply creates or updates the objects of manifest, YAML or JSON documents
// separated by "---" lines, as `kubectl apply --server-side --force-conflicts`
// does. Each document names its apiVersion, kind and metadata.name (and
// metadata.namespace, "default" when absent) in the plain block style of
// Kubernetes manifests: top-level keys at column 0 and metadata's keys one
// level in. The objects are applied in order; the first failure stops it.
func (c *Cluster) Apply(ctx context.Context, manifest string) error {
	for _, doc := range splitDocuments(manifest) {
		m, err := docMeta(doc)
		if err != nil {
			return err
		}
		p, err := c.objectPath(ctx, m.apiVersion, m.kind, m.namespace, m.name)
		if err != nil {
			return err
		}
		err = c.Do(ctx, http.MethodPatch, p+"?fieldManager=k8stest&force=true", "application/apply-patch+yaml", []byte(doc), nil)
		if err != nil {
			return fmt.Errorf("k8stest: apply %s %s: %w", m.kind, m.name, err)
		}
	}
	return nil
}

// splitDocuments splits a YAML stream into its non-empty documents.
func splitDocuments(s string) []string {
	var docs []string
	var cur strings.Builder
	flush := func() {
		d := cur.String()
		cur.Reset()
		for _, l := range strings.Split(d, "\n") {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
				docs = append(docs, d)
				return
			}
		}
	}
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.HasPrefix(l, "---") {
			flush()
			continue
		}
		cur.WriteString(l)
	}
	flush()
	return docs
}

type meta struct{ apiVersion, kind, name, namespace string }

// docMeta reads the type and name of one document: JSON, or YAML in the
// block style of manifests.
func docMeta(doc string) (meta, error) {
	var m meta
	if strings.HasPrefix(strings.TrimSpace(doc), "{") {
		var o struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct{ Name, Namespace string }
		}
		if err := json.Unmarshal([]byte(doc), &o); err != nil {
			return m, fmt.Errorf("k8stest: manifest: %w", err)
		}
		m = meta{o.APIVersion, o.Kind, o.Metadata.Name, o.Metadata.Namespace}
	} else {
		inMeta, metaIndent := false, -1
		for _, l := range strings.Split(doc, "\n") {
			t := strings.TrimSpace(l)
			if t == "" || strings.HasPrefix(t, "#") {
				continue
			}
			indent := len(l) - len(strings.TrimLeft(l, " "))
			k, v, _ := strings.Cut(t, ":")
			v = yamlScalar(v)
			if indent == 0 {
				inMeta = k == "metadata"
				switch k {
				case "apiVersion":
					m.apiVersion = v
				case "kind":
					m.kind = v
				}
				continue
			}
			if !inMeta {
				continue
			}
			if metaIndent < 0 {
				metaIndent = indent
			}
			if indent != metaIndent {
				continue
			}
			switch k {
			case "name":
				m.name = v
			case "namespace":
				m.namespace = v
			}
		}
	}
	if m.apiVersion == "" || m.kind == "" || m.name == "" {
		return m, fmt.Errorf("k8stest: manifest document without apiVersion, kind or metadata.name:\n%s", doc)
	}
	return m, nil
}

// yamlScalar is the value of a plain or quoted one-line YAML scalar.
func yamlScalar(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.Index(v, " #"); i >= 0 { // names have no " #" in them
		v = strings.TrimSpace(v[:i])
	}
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

// objectPath is the REST path of an object, found by the API's discovery.
func (c *Cluster) objectPath(ctx context.Context, apiVersion, kind, namespace, name string) (string, error) {
	key := apiVersion + " " + kind
	c.api.mu.Lock()
	r, ok := c.api.kinds[key]
	c.api.mu.Unlock()
	if !ok {
		prefix := "/apis/" + apiVersion
		if !strings.Contains(apiVersion, "/") {
			prefix = "/api/" + apiVersion
		}
		var list struct {
			Resources []struct {
				Name, Kind string
				Namespaced bool
			}
		}
		if err := c.Get(ctx, prefix, &list); err != nil {
			return "", err
		}
		c.api.mu.Lock()
		if c.api.kinds == nil {
			c.api.kinds = map[string]resource{}
		}
		for _, res := range list.Resources {
			if !strings.Contains(res.Name, "/") {
				c.api.kinds[apiVersion+" "+res.Kind] = resource{res.Name, res.Namespaced}
			}
		}
		r, ok = c.api.kinds[key]
		c.api.mu.Unlock()
		if !ok {
			return "", fmt.Errorf("k8stest: the API has no kind %s in %s", kind, apiVersion)
		}
	}
	p := "/apis/" + apiVersion
	if !strings.Contains(apiVersion, "/") {
		p = "/api/" + apiVersion
	}
	if r.namespaced {
		if namespace == "" {
			namespace = "default"
		}
		p += "/namespaces/" + url.PathEscape(namespace)
	}
	return p + "/" + r.name + "/" + url.PathEscape(name), nil
}

// Pod is what the tests read of a pod.
type Pod struct {
	Name, Namespace, UID string
	// IP is the pod's address, "" until it has one.
	IP    string
	Phase string
	// Ready: the pod's Ready condition is true.
	Ready bool
	// Deleting: the pod has a deletion timestamp (it is terminating).
	Deleting   bool
	Labels     map[string]string
	Containers []ContainerStatus
}

// ContainerStatus is the state of one container of a pod.
type ContainerStatus struct {
	Name         string
	Ready        bool
	RestartCount int
	Running      bool
	// Terminated is the container's current state when it has ended.
	Terminated *Termination
	// LastTerminated is the end of its previous run (before a restart).
	LastTerminated *Termination
}

// Termination is how a container ended, as the kubelet reported it.
type Termination struct {
	Pod, Container string
	ExitCode       int
	Signal         int
	Reason         string
	Message        string
	StartedAt      time.Time
	FinishedAt     time.Time
}

// Killed says the container was ended by SIGKILL: the grace period ran
// out (exit code 137, 128+9), or the kernel's OOM killer.
func (t Termination) Killed() bool { return t.ExitCode == 137 || t.Signal == 9 }

func (t Termination) String() string {
	return fmt.Sprintf("%s/%s exit %d signal %d reason %q", t.Pod, t.Container, t.ExitCode, t.Signal, t.Reason)
}

type podJSON struct {
	Metadata struct {
		Name, Namespace, UID string
		Labels               map[string]string
		DeletionTimestamp    *time.Time
		ResourceVersion      string
	}
	Status struct {
		Phase      string
		PodIP      string
		Conditions []struct{ Type, Status string }
		// ContainerStatuses, then InitContainerStatuses.
		ContainerStatuses []containerJSON
	}
}

type containerJSON struct {
	Name         string
	Ready        bool
	RestartCount int
	State        stateJSON
	LastState    stateJSON
}

type stateJSON struct {
	Running    *struct{}
	Terminated *struct {
		ExitCode, Signal      int
		Reason, Message       string
		StartedAt, FinishedAt time.Time
	}
}

func (s stateJSON) termination(pod, container string) *Termination {
	if s.Terminated == nil {
		return nil
	}
	t := s.Terminated
	return &Termination{Pod: pod, Container: container, ExitCode: t.ExitCode, Signal: t.Signal, Reason: t.Reason, Message: t.Message, StartedAt: t.StartedAt, FinishedAt: t.FinishedAt}
}

func (p podJSON) pod() Pod {
	out := Pod{Name: p.Metadata.Name, Namespace: p.Metadata.Namespace, UID: p.Metadata.UID, IP: p.Status.PodIP, Phase: p.Status.Phase,
		Deleting: p.Metadata.DeletionTimestamp != nil, Labels: p.Metadata.Labels}
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			out.Ready = c.Status == "True"
		}
	}
	for _, c := range p.Status.ContainerStatuses {
		out.Containers = append(out.Containers, ContainerStatus{Name: c.Name, Ready: c.Ready, RestartCount: c.RestartCount, Running: c.State.Running != nil,
			Terminated: c.State.termination(p.Metadata.Name, c.Name), LastTerminated: c.LastState.termination(p.Metadata.Name, c.Name)})
	}
	return out
}

func podsPath(ns, selector string) string {
	p := "/api/v1/namespaces/" + url.PathEscape(ns) + "/pods"
	if selector != "" {
		p += "?labelSelector=" + url.QueryEscape(selector)
	}
	return p
}

// Pods lists the pods of namespace ns that match the label selector
// (all of them for "").
func (c *Cluster) Pods(ctx context.Context, ns, selector string) ([]Pod, error) {
	var list struct{ Items []podJSON }
	if err := c.Get(ctx, podsPath(ns, selector), &list); err != nil {
		return nil, err
	}
	pods := make([]Pod, 0, len(list.Items))
	for _, p := range list.Items {
		pods = append(pods, p.pod())
	}
	return pods, nil
}

// pollInterval is how often the Wait methods look.
const pollInterval = 200 * time.Millisecond

// WaitPods polls the pods of ns matching selector until done returns true
// for them, and returns them; ctx bounds it.
func (c *Cluster) WaitPods(ctx context.Context, ns, selector string, done func([]Pod) bool) ([]Pod, error) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		pods, err := c.Pods(ctx, ns, selector)
		if err == nil && done(pods) {
			return pods, nil
		}
		select {
		case <-ctx.Done():
			return pods, fmt.Errorf("k8stest: waiting for the pods %q of %s: %w (last error: %v, %d pods)", selector, ns, ctx.Err(), err, len(pods))
		case <-tick.C:
		}
	}
}

// ServiceIP returns the cluster IP of the Service ns/name.
func (c *Cluster) ServiceIP(ctx context.Context, ns, name string) (string, error) {
	var svc struct{ Spec struct{ ClusterIP string } }
	if err := c.Get(ctx, "/api/v1/namespaces/"+url.PathEscape(ns)+"/services/"+url.PathEscape(name), &svc); err != nil {
		return "", err
	}
	return svc.Spec.ClusterIP, nil
}

func deploymentPath(ns, name string) string {
	return "/apis/apps/v1/namespaces/" + url.PathEscape(ns) + "/deployments/" + url.PathEscape(name)
}

// RolloutRestart starts a rolling update of the Deployment ns/name, as
// `kubectl rollout restart` does: it sets the pod template's annotation
// kubectl.kubernetes.io/restartedAt. It returns without waiting;
// WaitRollout waits.
func (c *Cluster) RolloutRestart(ctx context.Context, ns, name string) error {
	return c.Patch(ctx, deploymentPath(ns, name), map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{"kubectl.kubernetes.io/restartedAt": time.Now().Format(time.RFC3339Nano)}}}}})
}

// WaitRollout waits until the Deployment ns/name has rolled out its
// current template, as `kubectl rollout status` does: the controller has
// seen the newest generation, and every replica is updated and available,
// with no old replica left. Old pods may still be terminating then (they
// are no longer counted); WaitPods waits for them. A rollout past its
// progress deadline is an error. ctx bounds it.
func (c *Cluster) WaitRollout(ctx context.Context, ns, name string) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	last := "not read yet"
	for {
		var d struct {
			Metadata struct{ Generation int64 }
			Spec     struct{ Replicas *int }
			Status   struct {
				ObservedGeneration                                          int64
				Replicas, UpdatedReplicas, AvailableReplicas, ReadyReplicas int
				Conditions                                                  []struct{ Type, Status, Reason, Message string }
			}
		}
		err := c.Get(ctx, deploymentPath(ns, name), &d)
		if err == nil {
			want := 1
			if d.Spec.Replicas != nil {
				want = *d.Spec.Replicas
			}
			s := d.Status
			for _, cond := range s.Conditions {
				if cond.Type == "Progressing" && cond.Reason == "ProgressDeadlineExceeded" {
					return fmt.Errorf("k8stest: rollout of %s/%s: %s", ns, name, cond.Message)
				}
			}
			if s.ObservedGeneration >= d.Metadata.Generation && s.UpdatedReplicas == want && s.Replicas == want && s.AvailableReplicas == want {
				return nil
			}
			last = fmt.Sprintf("generation %d observed %d, %d wanted, %d updated, %d in all, %d available",
				d.Metadata.Generation, s.ObservedGeneration, want, s.UpdatedReplicas, s.Replicas, s.AvailableReplicas)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("k8stest: rollout of %s/%s: %w (%s)", ns, name, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// DeletePod deletes the pod ns/name with its grace period, as `kubectl
// delete pod` does, and returns without waiting for it to end.
func (c *Cluster) DeletePod(ctx context.Context, ns, name string) error {
	return c.Delete(ctx, "/api/v1/namespaces/"+url.PathEscape(ns)+"/pods/"+url.PathEscape(name))
}

// Evict asks the eviction API to evict the pod ns/name, which honours the
// PodDisruptionBudgets: a refusal is ErrDisruptionBudget (wrapped with the
// API's answer). It returns without waiting for the pod to end.
func (c *Cluster) Evict(ctx context.Context, ns, name string) error {
	body := map[string]any{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": map[string]string{"name": name, "namespace": ns}}
	err := c.Do(ctx, http.MethodPost, "/api/v1/namespaces/"+url.PathEscape(ns)+"/pods/"+url.PathEscape(name)+"/eviction", "", body, nil)
	var ae *APIError
	if errors.As(err, &ae) && ae.Code == http.StatusTooManyRequests {
		return fmt.Errorf("%w: %w", ErrDisruptionBudget, err)
	}
	return err
}

// DrainRetry is how often Drain asks again for an eviction a
// PodDisruptionBudget refused (kubectl drain waits 5 s).
const DrainRetry = time.Second

// Drain evicts the pods of ns matching selector as `kubectl drain` does
// (all at once, each asked again every DrainRetry while a
// PodDisruptionBudget refuses it) and waits until every one of them is
// gone. It does not cordon the node: the cluster has one node, and the
// replacements the Deployment creates must land on it, or a budget that
// keeps pods available would block the drain for ever. ctx bounds it.
func (c *Cluster) Drain(ctx context.Context, ns, selector string) error {
	pods, err := c.Pods(ctx, ns, selector)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(pods))
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.evictAndWait(ctx, ns, p.Name, p.UID)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Cluster) evictAndWait(ctx context.Context, ns, name, uid string) error {
	tick := time.NewTicker(DrainRetry)
	defer tick.Stop()
	for {
		err := c.Evict(ctx, ns, name)
		var ae *APIError
		if err == nil || errors.As(err, &ae) && ae.Code == http.StatusNotFound {
			break
		}
		if !errors.Is(err, ErrDisruptionBudget) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("k8stest: evict %s/%s: %w (%v)", ns, name, ctx.Err(), err)
		case <-tick.C:
		}
	}
	return c.waitGone(ctx, ns, name, uid)
}

// waitGone waits until the pod ns/name with uid no longer exists.
func (c *Cluster) waitGone(ctx context.Context, ns, name, uid string) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		var p podJSON
		err := c.Get(ctx, "/api/v1/namespaces/"+url.PathEscape(ns)+"/pods/"+url.PathEscape(name), &p)
		var ae *APIError
		if errors.As(err, &ae) && ae.Code == http.StatusNotFound || err == nil && p.Metadata.UID != uid {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("k8stest: waiting for pod %s/%s to end: %w", ns, name, ctx.Err())
		case <-tick.C:
		}
	}
}

// UpdateConfigMap sets the given keys of the ConfigMap ns/name's data (a
// merge patch: other keys stay). The kubelet brings the change to the
// pods' volumes on its next sync of each pod.
func (c *Cluster) UpdateConfigMap(ctx context.Context, ns, name string, data map[string]string) error {
	return c.Patch(ctx, "/api/v1/namespaces/"+url.PathEscape(ns)+"/configmaps/"+url.PathEscape(name), map[string]any{"data": data})
}

// Event is one Kubernetes event (the core/v1 Event object).
type Event struct {
	// Kind and Name are the object's the event is about ("Pod", "web-6c9f…").
	Kind, Name string
	// Type is Normal or Warning.
	Type    string
	Reason  string
	Message string
	Count   int
	// Time is when it was last seen.
	Time time.Time
}

// Events lists the events of namespace ns, oldest first as the API gives
// them.
func (c *Cluster) Events(ctx context.Context, ns string) ([]Event, error) {
	var list struct {
		Items []struct {
			InvolvedObject struct{ Kind, Name string }
			Type, Reason   string
			Message        string
			Count          int
			LastTimestamp  *time.Time
			EventTime      *time.Time
		}
	}
	if err := c.Get(ctx, "/api/v1/namespaces/"+url.PathEscape(ns)+"/events", &list); err != nil {
		return nil, err
	}
	var evs []Event
	for _, e := range list.Items {
		ev := Event{Kind: e.InvolvedObject.Kind, Name: e.InvolvedObject.Name, Type: e.Type, Reason: e.Reason, Message: e.Message, Count: e.Count}
		switch {
		case e.LastTimestamp != nil:
			ev.Time = *e.LastTimestamp
		case e.EventTime != nil:
			ev.Time = *e.EventTime
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// Logs returns the log of container in the pod ns/pod (the only container
// for ""); with previous, the log of its run before the last restart.
func (c *Cluster) Logs(ctx context.Context, ns, pod, container string, previous bool) (string, error) {
	q := url.Values{}
	if container != "" {
		q.Set("container", container)
	}
	if previous {
		q.Set("previous", "true")
	}
	var b []byte
	err := c.Do(ctx, http.MethodGet, "/api/v1/namespaces/"+url.PathEscape(ns)+"/pods/"+url.PathEscape(pod)+"/log?"+q.Encode(), "", nil, &b)
	return string(b), err
}

// TerminationWatch records the container terminations of a set of pods;
// see WatchTerminations.
type TerminationWatch struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu    sync.Mutex
	seen  map[string]bool
	terms []Termination
	err   error
}

// WatchTerminations watches the pods of ns matching selector and records
// every container termination the kubelet reports, including those of
// pods that are deleted right after (a rolling update's old pods: their
// last status is gone from the API once they are). It returns once the
// watch has started; Stop ends it. The watch ends by itself with ctx.
func (c *Cluster) WatchTerminations(ctx context.Context, ns, selector string) (*TerminationWatch, error) {
	var list struct {
		Metadata struct{ ResourceVersion string }
		Items    []podJSON
	}
	if err := c.Get(ctx, podsPath(ns, selector), &list); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &TerminationWatch{cancel: cancel, done: make(chan struct{}), seen: map[string]bool{}}
	for _, p := range list.Items {
		w.record(p)
	}
	go func() {
		defer close(w.done)
		w.err = c.watchPods(ctx, ns, selector, list.Metadata.ResourceVersion, w.record)
	}()
	return w, nil
}

func (w *TerminationWatch) record(p podJSON) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, cs := range p.Status.ContainerStatuses {
		for _, t := range []*Termination{cs.State.termination(p.Metadata.Name, cs.Name), cs.LastState.termination(p.Metadata.Name, cs.Name)} {
			if t == nil {
				continue
			}
			key := p.Metadata.UID + "/" + t.Container + "/" + t.StartedAt.String()
			if !w.seen[key] {
				w.seen[key] = true
				w.terms = append(w.terms, *t)
			}
		}
	}
}

// Terminations returns what the watch has recorded so far.
func (w *TerminationWatch) Terminations() []Termination {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Termination(nil), w.terms...)
}

// Stop ends the watch, waits for it, and returns every termination it
// recorded, and the error that ended the watch early, if one did.
// Idempotent.
func (w *TerminationWatch) Stop() ([]Termination, error) {
	w.cancel()
	<-w.done
	if errors.Is(w.err, context.Canceled) {
		return w.Terminations(), nil
	}
	return w.Terminations(), w.err
}

// watchPods follows the pods of ns matching selector from resource version
// rv and calls f with each new state, until ctx ends. A watch the server
// closes (they time out) is started again from the last version seen; one
// whose version has expired (410) starts again from a fresh list.
func (c *Cluster) watchPods(ctx context.Context, ns, selector, rv string, f func(podJSON)) error {
	for {
		q := url.Values{"watch": {"1"}, "resourceVersion": {rv}, "allowWatchBookmarks": {"true"}}
		if selector != "" {
			q.Set("labelSelector", selector)
		}
		resp, err := c.request(ctx, http.MethodGet, "/api/v1/namespaces/"+url.PathEscape(ns)+"/pods?"+q.Encode(), "", nil)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		expired := false
		dec := json.NewDecoder(bufio.NewReader(resp.Body))
		for {
			var ev struct {
				Type   string
				Object json.RawMessage
			}
			if err := dec.Decode(&ev); err != nil {
				break
			}
			if ev.Type == "ERROR" {
				var st struct{ Code int }
				_ = json.Unmarshal(ev.Object, &st)
				expired = st.Code == http.StatusGone
				break
			}
			var p podJSON
			if json.Unmarshal(ev.Object, &p) != nil {
				continue
			}
			if p.Metadata.ResourceVersion != "" {
				rv = p.Metadata.ResourceVersion
			}
			if ev.Type != "BOOKMARK" {
				f(p)
			}
		}
		resp.Body.Close()
		select { // a server that closes each watch at once is not asked in a loop
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
		if expired {
			var list struct {
				Metadata struct{ ResourceVersion string }
				Items    []podJSON
			}
			if err := c.Get(ctx, podsPath(ns, selector), &list); err != nil {
				return err
			}
			for _, p := range list.Items {
				f(p)
			}
			rv = list.Metadata.ResourceVersion
		}
	}
}
