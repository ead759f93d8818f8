//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/handoff-go/handoff/health"
)

// mainEnv makes the test binary run main instead of the tests: the example
// runs as a process of its own (handoff.Run is once per process).
const mainEnv = "HANDOFF_EXAMPLE_KUBERNETES_MAIN"

// waitLimit bounds every wait; generous, because the machine is shared.
const waitLimit = 30 * time.Second

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		main()
		return
	}
	goleak.VerifyTestMain(m)
}

// manifest is the part of deploy.yaml's documents the checks read.
type manifest struct {
	Kind     string
	Metadata struct{ Name string }
	Data     map[string]string
	Spec     struct {
		Replicas int
		Strategy struct {
			RollingUpdate struct {
				MaxUnavailable any `yaml:"maxUnavailable"`
				MaxSurge       any `yaml:"maxSurge"`
			} `yaml:"rollingUpdate"`
		}
		MaxUnavailable any `yaml:"maxUnavailable"` // PodDisruptionBudget
		Template       struct {
			Spec struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				Containers                    []container
				Volumes                       []struct {
					Name      string
					ConfigMap struct{ Name string } `yaml:"configMap"`
				}
			}
		}
	}
}

type container struct {
	Image string
	Args  []string
	Ports []struct {
		Name          string
		ContainerPort int `yaml:"containerPort"`
	}
	StartupProbe   *probe `yaml:"startupProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Lifecycle      struct {
		PreStop *struct {
			HTTPGet httpGet `yaml:"httpGet"`
		} `yaml:"preStop"`
	}
	VolumeMounts []struct {
		Name      string
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet          httpGet `yaml:"httpGet"`
	PeriodSeconds    int     `yaml:"periodSeconds"`
	FailureThreshold int     `yaml:"failureThreshold"`
}

type httpGet struct {
	Path string
	Port string
}

func readManifests(t *testing.T) map[string]manifest {
	t.Helper()
	b, err := os.ReadFile("deploy.yaml")
	require.NoError(t, err)
	docs := map[string]manifest{}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var m manifest
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		require.NotContains(t, docs, m.Kind, "two documents of one kind")
		docs[m.Kind] = m
	}
	return docs
}

// TestManifests checks that deploy.yaml and the server agree: the args
// parse, the probes and the preStop hook name the health port and
// package health's paths, the grace period holds the shutdown delay and
// the drain (and the server is told it), the rolling update never takes a
// ready pod away first, the ConfigMap holds the flags file the server
// reads.
func TestManifests(t *testing.T) {
	docs := readManifests(t)
	for _, k := range []string{"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"} {
		require.Contains(t, docs, k)
	}
	d := docs["Deployment"]
	assert.Equal(t, 3, d.Spec.Replicas)
	assert.Equal(t, 0, d.Spec.Strategy.RollingUpdate.MaxUnavailable, "maxUnavailable")
	assert.Equal(t, 1, docs["PodDisruptionBudget"].Spec.MaxUnavailable, "the budget's maxUnavailable")
	require.Len(t, d.Spec.Template.Spec.Containers, 1)
	c := d.Spec.Template.Spec.Containers[0]

	cfg, err := parseFlags(flag.NewFlagSet("kubernetes", flag.ContinueOnError), c.Args)
	require.NoError(t, err, "the container's args")
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for name, addr := range map[string]string{"http": cfg.addr, "grpc": cfg.grpcAddr, "health": cfg.healthAddr} {
		assert.Equal(t, fmt.Sprintf(":%d", ports[name]), addr, "port %s", name)
	}
	for path, p := range map[string]*probe{health.PathStartup: c.StartupProbe, health.PathReady: c.ReadinessProbe, health.PathLive: c.LivenessProbe} {
		if assert.NotNil(t, p, path) {
			assert.Equal(t, httpGet{path, "health"}, p.HTTPGet, path)
		}
	}
	if assert.NotNil(t, c.Lifecycle.PreStop, "preStop") {
		assert.Equal(t, httpGet{health.PathPreStop, "health"}, c.Lifecycle.PreStop.HTTPGet)
	}

	grace := time.Duration(d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	assert.Equal(t, grace, cfg.gracePeriod, "-grace-period repeats terminationGracePeriodSeconds")
	assert.Greater(t, grace, cfg.shutdownDelay+cfg.drainTimeout+health.PreStopSlack,
		"the grace period holds the preStop call (delay + drain + slack)")
	assert.Positive(t, cfg.shutdownDelay, "the policy is on")

	require.Len(t, c.VolumeMounts, 1)
	file := strings.TrimPrefix(cfg.flagsFile, c.VolumeMounts[0].MountPath+"/")
	assert.NotEqual(t, cfg.flagsFile, file, "the flags file is in the mounted volume")
	assert.Equal(t, docs["ConfigMap"].Metadata.Name, d.Spec.Template.Spec.Volumes[0].ConfigMap.Name)
	assert.Contains(t, docs["ConfigMap"].Data, file, "the ConfigMap holds the flags file")
}

// volume is a ConfigMap volume as the kubelet's atomic writer lays it out:
// a timestamped directory holds the files, the symlink ..data points to
// it, and each key is a symlink through ..data.
type volume struct {
	t   *testing.T
	dir string
	n   int
}

func newVolume(t *testing.T, files map[string]string) *volume {
	v := &volume{t: t, dir: t.TempDir()}
	v.update(files)
	for name := range files {
		require.NoError(t, os.Symlink(filepath.Join("..data", name), filepath.Join(v.dir, name)))
	}
	return v
}

// update writes a new timestamped directory, points ..data_tmp at it,
// renames ..data_tmp over ..data and removes the old directory, as the
// kubelet does.
func (v *volume) update(files map[string]string) {
	v.n++
	ts := fmt.Sprintf("..2026_11_27_00_00_%02d.%d", v.n, 1000+v.n)
	require.NoError(v.t, os.Mkdir(filepath.Join(v.dir, ts), 0o755))
	for name, content := range files {
		require.NoError(v.t, os.WriteFile(filepath.Join(v.dir, ts, name), []byte(content), 0o644))
	}
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	require.NoError(v.t, os.Symlink(ts, filepath.Join(v.dir, "..data_tmp")))
	require.NoError(v.t, os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")))
	if old != "" {
		require.NoError(v.t, os.RemoveAll(filepath.Join(v.dir, old)))
	}
}

// server is the example running as a process, logging JSON.
type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string

	mu      sync.Mutex
	records []map[string]any
	changed chan struct{}
	gone    chan struct{}
}

func start(t *testing.T, args ...string) *server {
	t.Helper()
	s := &server{t: t, changed: make(chan struct{}), gone: make(chan struct{})}
	s.cmd = exec.Command(os.Args[0], append([]string{"-addr", "127.0.0.1:0", "-health-addr", "127.0.0.1:0", "-log-json"}, args...)...)
	s.cmd.Env = append(os.Environ(), mainEnv+"=1")
	r, w, err := os.Pipe()
	require.NoError(t, err)
	s.cmd.Stdout, s.cmd.Stderr = w, w
	require.NoError(t, s.cmd.Start())
	w.Close()
	go s.read(r)
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.gone
		_ = s.cmd.Wait()
	})
	s.addr = s.wait(func(r map[string]any) bool { return r["msg"] == "handoff: serving" })["addr"].(string)
	return s
}

func (s *server) read(r *os.File) {
	defer r.Close()
	defer close(s.gone)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		s.t.Log(sc.Text())
		rec := map[string]any{}
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		s.mu.Lock()
		s.records = append(s.records, rec)
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
}

// wait returns the first record that matches, waiting for it (bounded).
func (s *server) wait(match func(map[string]any) bool) map[string]any {
	s.t.Helper()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for {
		s.mu.Lock()
		changed := s.changed
		for _, r := range s.records {
			if match(r) {
				s.mu.Unlock()
				return r
			}
		}
		s.mu.Unlock()
		select {
		case <-changed:
		case <-s.gone:
			require.FailNow(s.t, "no such record", "the server has exited")
		case <-timer.C:
			require.FailNow(s.t, "no such record", "within %s", waitLimit)
		}
	}
}

func (s *server) get(path string) string {
	s.t.Helper()
	c := &http.Client{Timeout: waitLimit, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + s.addr + path)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(s.t, err)
	require.Equal(s.t, http.StatusOK, resp.StatusCode, "%s", b)
	return string(b)
}

// swapped matches the flag set's swap to values version seq.
func swapped(seq int) func(map[string]any) bool {
	return func(r map[string]any) bool { return r["msg"] == "reload: swap" && r["seq"] == float64(seq) }
}

// TestConfigMapSwap (issue 11 b.4): an update of the mounted ConfigMap, as
// the kubelet makes it (a new directory, an atomic swap of ..data), is
// hot-swapped: the next request sees the new flag, the process is the
// same; a broken update is refused and the flags stay as they were.
func TestConfigMapSwap(t *testing.T) {
	vol := newVolume(t, map[string]string{"flags.json": `{"greeting": "hello"}`})
	s := start(t, "-flags", filepath.Join(vol.dir, "flags.json"), "-shutdown-delay", "0")
	s.wait(swapped(2)) // version 1 is the defaults, 2 the file
	assert.True(t, strings.HasPrefix(s.get("/greeting"), "hello from"))

	vol.update(map[string]string{"flags.json": `{"greeting": "bonjour"}`})
	s.wait(swapped(3))
	assert.True(t, strings.HasPrefix(s.get("/greeting"), "bonjour from"), "the update is served")

	vol.update(map[string]string{"flags.json": `{"greeting": "guten tag"}`}) // not a variant
	s.wait(func(r map[string]any) bool { return r["msg"] == "reload: failure" })
	assert.True(t, strings.HasPrefix(s.get("/greeting"), "bonjour from"), "a broken update changes nothing")

	vol.update(map[string]string{"flags.json": `{"greeting": "hallo"}`})
	s.wait(swapped(4))
	assert.True(t, strings.HasPrefix(s.get("/greeting"), "hallo from"))

	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	<-s.gone
	assert.NoError(t, s.cmd.Wait(), "exit status")
}
