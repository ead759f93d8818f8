//go:build linux

package metrics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/internal/servertest"
	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// TestPrometheusScrapesUpgrades (issue 13, acceptance a): a real Prometheus
// (Debian's prometheus, started here on 127.0.0.1 with a 1 s scrape
// interval) scrapes examples/httpserver's admin port through 5 upgrades
// under the mixed load. Through its HTTP API: upgrades_total{committed}
// reaches 5 and never resets (each upgrade is counted by a different
// process, the scraper sees one counter), and every phase histogram holds
// the 5 upgrades. The load loses no request.
func TestPrometheusScrapesUpgrades(t *testing.T) {
	prom := requireTool(t, "prometheus", "prometheus")
	const upgrades = 5
	builds, err := servertest.Build("github.com/handoff-go/handoff/examples/httpserver", raceEnabled, "")
	require.NoError(t, err)
	t.Cleanup(builds.Remove)
	require.NoError(t, servertest.MakeSubreaper())

	s, _ := servertest.Start(t, builds, servertest.Options{Args: []string{"-admin-addr", "127.0.0.1:0", "-probation", "200ms"}})
	serving := s.WaitRecord(0, 10*time.Second, func(r servertest.Record) bool { return r.Msg == servertest.MsgServing })
	require.Len(t, serving.Addrs, 2, "HTTP and admin")
	adminAddr := serving.Addrs[1]

	api := startPrometheus(t, prom, adminAddr)
	load := upgradertest.MixedConfig(s.Addr)
	stopLoad := upgradertest.Start(t.Context(), load)
	// Every generation is scraped at least once: a scrape a second, and
	// a generation serves for 2.5 s.
	waitQuery(t, api, `handoff_generation`, 1, 30*time.Second)
	for i := range upgrades {
		time.Sleep(2500 * time.Millisecond)
		s.Install("")
		pid := s.Upgrade()
		t.Logf("upgrade %d: pid %d", i+1, pid)
	}
	committed := waitQuery(t, api, `handoff_upgrades_total{outcome="committed"}`, upgrades, 30*time.Second)
	r := stopLoad()
	t.Log(r.Summary())
	assert.NoError(t, r.Check(load))

	assert.Equal(t, float64(upgrades), committed, `handoff_upgrades_total{outcome="committed"}`)
	assert.Equal(t, float64(upgrades+1), query(t, api, `handoff_generation`), "the generation Prometheus sees last")
	resets := query(t, api, `resets(handoff_upgrades_total{outcome="committed"}[5m])`)
	t.Logf(`Prometheus: handoff_upgrades_total{outcome="committed"} = %.0f, resets over the run = %.0f, over %d processes`, committed, resets, upgrades+1)
	assert.Zero(t, resets, "the counter never reset across the processes")
	assert.Equal(t, float64(upgrades), query(t, api, `max_over_time(handoff_upgrades_total{outcome="committed"}[5m])`))
	for _, phase := range []string{"spawn", "ready", "probation", "drain"} {
		n := waitQuery(t, api, fmt.Sprintf(`handoff_upgrade_phase_duration_seconds_count{phase=%q}`, phase), upgrades, 10*time.Second)
		assert.Equal(t, float64(upgrades), n, "phase %s: observations", phase)
		sum := query(t, api, fmt.Sprintf(`handoff_upgrade_phase_duration_seconds_sum{phase=%q}`, phase))
		p90 := query(t, api, fmt.Sprintf(`histogram_quantile(0.9, handoff_upgrade_phase_duration_seconds_bucket{phase=%q})`, phase))
		t.Logf("phase %-9s count %.0f, mean %6.1f ms, p90 %6.1f ms (from the buckets)", phase, n, 1000*sum/n, 1000*p90)
		assert.Positive(t, sum, "phase %s: duration", phase)
	}
	probation := query(t, api, `handoff_upgrade_phase_duration_seconds_sum{phase="probation"}`) / upgrades
	assert.GreaterOrEqual(t, probation, 0.2, "the probation lasts -probation")
	assert.Equal(t, float64(upgrades), query(t, api, `handoff_upgrade_duration_seconds_count{outcome="committed"}`))
	assert.Equal(t, 1.0, query(t, api, `handoff_last_upgrade_successful`))
	assert.Zero(t, query(t, api, `handoff_upgrades_total{outcome="rolled_back"}`))
	assert.Zero(t, s.Stop(), "exit status of the last generation")
}

// startPrometheus runs Prometheus on 127.0.0.1, scraping target every
// second, and returns its API's base URL once it is ready. It is stopped
// (SIGTERM, bounded, then killed) when the test ends; its data lives in
// the test's temporary directory.
func startPrometheus(t *testing.T, bin, target string) string {
	t.Helper()
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: httpserver
    metrics_path: /metrics
    static_configs:
      - targets: [%q]
`, target)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644))
	addr := freeAddr(t)
	log, err := os.Create(filepath.Join(dir, "prometheus.log"))
	require.NoError(t, err)
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr,
		"--web.console.templates="+filepath.Join(dir, "none"), "--web.console.libraries="+filepath.Join(dir, "none"))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		log.Close()
	})
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(base + "/-/ready")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("prometheus exited:\n%s", b)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("prometheus not ready within 30s:\n%s", b)
		}
	}
}

// freeAddr returns a loopback address no one listens on (Prometheus takes
// a fixed port).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

// query runs an instant PromQL query and returns its one value (the
// largest if several series answer), or -1 for no result.
func query(t *testing.T, api, q string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api+"/api/v1/query?query="+url.QueryEscape(q), nil)
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	var out struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	require.NoError(t, json.Unmarshal(b, &out), "%s", b)
	require.Equal(t, "success", out.Status, "%s: %s", q, out.Error)
	v := -1.0
	for _, r := range out.Data.Result {
		s, _ := r.Value[1].(string)
		f, err := strconv.ParseFloat(s, 64)
		require.NoError(t, err)
		v = max(v, f)
	}
	return v
}

// waitQuery polls q until its value reaches want (bounded), and returns
// the last value.
func waitQuery(t *testing.T, api, q string, want float64, within time.Duration) float64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v := query(t, api, q)
		if v >= want || time.Now().After(deadline) {
			return v
		}
		time.Sleep(250 * time.Millisecond)
	}
}
