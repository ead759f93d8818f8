//go:build linux

package handoff_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/handoff-go/handoff/health"
	"github.com/handoff-go/handoff/internal/servertest"
	"github.com/handoff-go/handoff/upgrader/upgradertest"
	"github.com/handoff-go/handoff/upgrader/upgradertest/grpcload"
)

// The termination policy of the one-call API (issue 11, acceptance e), on
// examples/kubernetes run as the kubelet would run it: probes and the
// preStop hook on the health port, SIGTERM after the hook, signals during
// the shutdown delay, and PID 1 of a PID namespace of its own.

// kubernetesServer is examples/kubernetes, built on first use (only these
// tests need it).
var (
	kubernetesOnce   sync.Once
	kubernetesServer *servertest.Builds
	kubernetesErr    error
)

func kubernetesBuild(t *testing.T) *servertest.Builds {
	t.Helper()
	kubernetesOnce.Do(func() {
		kubernetesServer, kubernetesErr = servertest.Build("github.com/handoff-go/handoff/examples/kubernetes", raceEnabled, "")
	})
	require.NoError(t, kubernetesErr)
	return kubernetesServer
}

// freeAddr returns a loopback address nothing listens on, for a server
// whose address the test must know before it starts.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// probeTimeout bounds one probe, as the kubelet's timeoutSeconds does.
const probeTimeout = 5 * time.Second

// probeHTTP sends GET path on a new connection, as the kubelet does, and
// returns the status code.
func probeHTTP(addr, path string) (int, error) {
	c := &http.Client{Timeout: probeTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// probeStates is what the three HTTP probes answer (status codes).
type probeStates struct{ live, startup, ready int }

func probeAll(t *testing.T, addr string) probeStates {
	t.Helper()
	var s probeStates
	for _, p := range []struct {
		path string
		code *int
	}{{health.PathLive, &s.live}, {health.PathStartup, &s.startup}, {health.PathReady, &s.ready}} {
		code, err := probeHTTP(addr, p.path)
		require.NoError(t, err, "GET %s", p.path)
		*p.code = code
	}
	return s
}

// probeGRPC asks the standard gRPC health service at addr, on a new
// connection (as the kubelet's grpc probe does), for the server's overall
// status; a server that takes no new connection (starting, draining) gives
// an error within timeout.
func probeGRPC(addr string, timeout time.Duration) (healthpb.HealthCheckResponse_ServingStatus, error) {
	conn, err := grpc.Dial(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return 0, err
	}
	return resp.Status, nil
}

const (
	ok200  = http.StatusOK
	bad503 = http.StatusServiceUnavailable
)

// healthEvent matches the records of the termination policy's events of
// kind (package health's).
func healthEvent(kind health.EventKind) func(servertest.Record) bool {
	return func(r servertest.Record) bool {
		return strings.HasPrefix(r.Msg, "health: ") && r.Event == kind.String()
	}
}

// countRecords counts the records from index from on that match.
func countRecords(s *servertest.Server, from int, match func(servertest.Record) bool) int {
	n := 0
	for _, r := range s.RecordsSince(from) {
		if match(r) {
			n++
		}
	}
	return n
}

// preStopCall is the kubelet's preStop httpGet, answered once the drain
// is over.
type preStopCall struct {
	code int
	body string
	err  error
}

func callPreStop(addr string) <-chan preStopCall {
	done := make(chan preStopCall, 1)
	go func() {
		c := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get("http://" + addr + health.PathPreStop)
		if err != nil {
			done <- preStopCall{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- preStopCall{code: resp.StatusCode, body: strings.TrimSpace(string(b)), err: err}
	}()
	return done
}

func waitPreStop(t *testing.T, c <-chan preStopCall) preStopCall {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(2 * time.Minute):
		t.Fatal("the preStop call did not return within 2 minutes")
		return preStopCall{}
	}
}

// openStream starts GET /stream?s=length on a connection of its own and
// returns once its first line has arrived (the server holds it in flight);
// the channel gets nil once the stream has ended whole ("done"), or what
// went wrong.
func openStream(t *testing.T, addr string, length time.Duration) <-chan error {
	t.Helper()
	c := &http.Client{Timeout: length + time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://%s/stream?s=%g", addr, length.Seconds()))
	require.NoError(t, err)
	rd := bufio.NewReader(resp.Body)
	_, err = rd.ReadString('\n')
	if err != nil {
		resp.Body.Close()
		require.NoError(t, err, "the stream's first line")
	}
	done := make(chan error, 1)
	go func() {
		defer resp.Body.Close()
		last := ""
		for {
			line, err := rd.ReadString('\n')
			if err == io.EOF && line == "" {
				if last != "done\n" {
					done <- fmt.Errorf("the stream ended after %q", last)
					return
				}
				done <- nil
				return
			}
			if err != nil {
				done <- err
				return
			}
			last = line
		}
	}()
	return done
}

// startKubernetes starts examples/kubernetes with the flags file off and
// args, and returns it with the address its probes answer on.
func startKubernetes(t *testing.T, o servertest.Options, args ...string) (*servertest.Server, string) {
	t.Helper()
	o.Args = append([]string{"-flags", ""}, args...)
	s, _ := servertest.Start(t, kubernetesBuild(t), o)
	pid := s.First
	if o.NewPIDNamespace {
		pid = 1
	}
	r := s.WaitRecord(0, 10*time.Second, func(r servertest.Record) bool { return r.Msg == servertest.MsgServing && r.PID == pid })
	require.NotEmpty(t, r.HealthAddr, "the serving record names no health address")
	return s, r.HealthAddr
}

// TestTerminationPolicy (issue 11 e): examples/kubernetes, stopped the way
// the kubelet stops a pod: the preStop hook is called, and called again
// while the first call waits, then SIGTERM follows the hook. One
// termination runs: the shutdown delay (serving normally, "Connection:
// close" on every response), one drain, exit 0; both calls return 200 once
// the drain is over. The non-retrying clients of upgradertest lose nothing
// during the delay and the drain (the load stops sending a second before
// the delay ends, as the routes to a pod have gone by then; its streams and
// slow requests in flight finish during the drain). The probes and gRPC's
// health service are checked at each phase: starting (a slow first health
// check), serving, delaying, draining; with the readiness flip off (the
// default) and on.
func TestTerminationPolicy(t *testing.T) {
	for _, flip := range []bool{false, true} {
		t.Run(map[bool]string{false: "flip off", true: "flip on"}[flip], func(t *testing.T) {
			testTerminationPolicy(t, flip)
		})
	}
}

func testTerminationPolicy(t *testing.T, flip bool) {
	const delay = 3 * time.Second
	healthAddr, grpcAddr := freeAddr(t), freeAddr(t)
	args := []string{"-health-addr", healthAddr, "-grpc-addr", grpcAddr, "-warmup", "2s",
		"-shutdown-delay", delay.String(), "-drain-timeout", "20s", "-grace-period", "30s"}
	if flip {
		args = append(args, "-not-ready-on-stop")
	}

	// Starting: the probes answer (the health port is served from the
	// start) while the first health check warms up; gRPC takes no
	// connection before the process is in charge.
	type startingSeen struct {
		http    probeStates
		grpcErr error
		ok      bool
	}
	starting := make(chan startingSeen, 1)
	proberCtx, stopProber := context.WithTimeout(t.Context(), 30*time.Second)
	defer stopProber()
	go func() {
		defer close(starting)
		for proberCtx.Err() == nil {
			var s probeStates
			var err error
			if s.live, err = probeHTTP(healthAddr, health.PathLive); err == nil {
				s.startup, _ = probeHTTP(healthAddr, health.PathStartup)
				s.ready, _ = probeHTTP(healthAddr, health.PathReady)
				if s.startup == bad503 {
					_, gerr := probeGRPC(grpcAddr, 300*time.Millisecond)
					starting <- startingSeen{http: s, grpcErr: gerr, ok: true}
					return
				}
			}
			select {
			case <-proberCtx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	s, _ := startKubernetes(t, servertest.Options{}, args...)
	pid := s.First
	seen := <-starting
	require.True(t, seen.ok, "the probes never answered while the server started")
	assert.Equal(t, probeStates{ok200, bad503, bad503}, seen.http, "starting")
	assert.Error(t, seen.grpcErr, "starting: gRPC answered before the process was in charge")
	assert.Zero(t, countRecords(s, 0, healthEvent(health.EventGracePeriod)), "the grace period fits: no warning")

	// Serving.
	assert.Equal(t, probeStates{ok200, ok200, ok200}, probeAll(t, healthAddr), "serving")
	st, err := probeGRPC(grpcAddr, probeTimeout)
	require.NoError(t, err)
	assert.Equal(t, healthpb.HealthCheckResponse_SERVING, st, "serving: gRPC")

	// The load, and one stream that lasts past the delay into the drain
	// (so that the draining phase can be probed).
	streamDone := openStream(t, s.Addr, delay+5*time.Second)
	load := upgradertest.MixedConfig(s.Addr)
	var samples atomic.Int64
	load.OnSample = func(upgradertest.Sample) { samples.Add(1) }
	stopLoad := upgradertest.Start(t.Context(), load)
	grpcLoad := upgradertest.Config{Addr: grpcAddr, Workers: map[upgradertest.Kind]int{upgradertest.GRPCUnary: 2},
		Pause: 2 * time.Millisecond, Clients: grpcload.Clients(grpcAddr, nil)}
	stopGRPCLoad := upgradertest.Start(t.Context(), grpcLoad)
	require.Eventually(t, func() bool { return samples.Load() >= 200 }, 30*time.Second, 10*time.Millisecond, "the load made no requests")

	// The kubelet's preStop hook, twice.
	from := s.Mark()
	first := callPreStop(healthAddr)
	stopping := s.WaitRecord(from, 10*time.Second, healthEvent(health.EventStopping))
	assert.Equal(t, health.PhaseDelaying.String(), stopping.Phase)
	assert.Contains(t, stopping.Error, health.ErrPreStop.Error())
	second := callPreStop(healthAddr)
	require.Eventually(t, func() bool { return countRecords(s, from, healthEvent(health.EventPreStop)) == 2 },
		10*time.Second, 10*time.Millisecond, "the second preStop call was not seen")

	// Delaying: the probes and gRPC as serving (flip off) or not ready
	// (flip on); the server still answers, with Connection: close.
	want := probeStates{ok200, ok200, ok200}
	wantGRPC := healthpb.HealthCheckResponse_SERVING
	if flip {
		want.ready, wantGRPC = bad503, healthpb.HealthCheckResponse_NOT_SERVING
	}
	assert.Equal(t, want, probeAll(t, healthAddr), "delaying")
	st, err = probeGRPC(grpcAddr, probeTimeout)
	require.NoError(t, err, "delaying: gRPC serves on")
	assert.Equal(t, wantGRPC, st, "delaying: gRPC")
	resp, err := http.Get("http://" + s.Addr + "/pid")
	require.NoError(t, err, "delaying: the server serves on")
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.True(t, resp.Close, "delaying: the response says Connection: close")

	// The load runs on until a second before the delay ends, then stops
	// sending: by then the routes to a pod have gone (that is what the
	// delay is for), and at the drain's start the listening socket closes,
	// refusing (or, for one in the kernel's queue at that instant,
	// resetting) a connection that still arrives. What is in flight, the
	// slow requests and streams, finishes during the drain.
	stoppedAt, err := time.Parse(time.RFC3339Nano, stopping.Time)
	require.NoError(t, err)
	select {
	case <-time.After(time.Until(stoppedAt.Add(delay - time.Second))): // the scenario's timing, not a synchronisation
	case <-t.Context().Done():
	}
	_, drainingEarly := s.FindRecord(from, 0, healthEvent(health.EventDraining))
	require.False(t, drainingEarly, "the delay ended before its checks did (a loaded machine?); log:\n%s", s.LogText(from))
	stopGRPCLoad()
	loadDone := make(chan *upgradertest.Result, 1)
	go func() { loadDone <- stopLoad() }()

	// Draining.
	draining := s.WaitRecord(from, delay+30*time.Second, healthEvent(health.EventDraining))
	assert.Equal(t, want, probeAll(t, healthAddr), "draining")
	// The gRPC server stops taking connections when the drain begins
	// (what the kernel had queued is still served, and may answer).
	if st, err := probeGRPC(grpcAddr, 500*time.Millisecond); err == nil {
		assert.Equal(t, wantGRPC, st, "draining: gRPC, on a connection queued before the listener closed")
	} else {
		t.Logf("draining: gRPC takes no new connection: %v", err)
	}
	_, drained := s.FindRecord(from, 0, healthEvent(health.EventDrained))
	assert.False(t, drained, "the drain ended before its checks did; log:\n%s", s.LogText(from))

	for i, c := range []<-chan preStopCall{first, second} {
		r := waitPreStop(t, c)
		require.NoError(t, r.err, "preStop call %d", i+1)
		assert.Equal(t, ok200, r.code, "preStop call %d", i+1)
		assert.Equal(t, "drained", r.body, "preStop call %d", i+1)
	}
	// The kubelet's SIGTERM, once the hook has returned.
	s.Signal(pid, syscall.SIGTERM)
	assert.Zero(t, s.WaitExit(pid, 60*time.Second), "exit status")

	r := <-loadDone
	t.Log("HTTP: " + r.Summary())
	assert.NoError(t, r.Check(load))
	gr := stopGRPCLoad()
	t.Log("gRPC: " + gr.Summary())
	assert.NoError(t, gr.Check(grpcLoad))
	select {
	case err := <-streamDone:
		assert.NoError(t, err, "the long stream")
	case <-time.After(60 * time.Second):
		t.Error("the long stream did not end within 60 s")
	}

	assert.Equal(t, 2, countRecords(s, from, healthEvent(health.EventPreStop)), "preStop calls")
	assert.Equal(t, 1, countRecords(s, from, healthEvent(health.EventStopping)), "terminations")
	assert.Equal(t, 1, countRecords(s, from, healthEvent(health.EventDraining)), "drains begun")
	assert.Equal(t, 1, countRecords(s, from, healthEvent(health.EventDrained)), "drains ended")
	assert.Equal(t, 1, countRecords(s, from, eventOf(pid, "drain-started")), "upgrader drains")
	t.Logf("draining: %s", draining.Raw)
	assert.Empty(t, servertest.Descendants(s.Bin), "processes left")
}

// TestTerminationGracePeriodWarning (issue 11 e): a grace period shorter
// than the shutdown delay plus the drain timeout is reported at start, a
// warning with the figures, before the server serves.
func TestTerminationGracePeriodWarning(t *testing.T) {
	s, _ := startKubernetes(t, servertest.Options{}, "-health-addr", "127.0.0.1:0",
		"-shutdown-delay", "1s", "-drain-timeout", "2s", "-grace-period", "2s")
	var warn, serving int = -1, -1
	for i, r := range s.RecordsSince(0) {
		switch {
		case warn < 0 && healthEvent(health.EventGracePeriod)(r):
			warn = i
			assert.Contains(t, r.Raw, `"level":"WARN"`)
			assert.Contains(t, r.Error, "shutdown delay 1s + drain timeout 2s = 3s, grace period 2s")
			assert.Contains(t, r.Error, health.ErrGracePeriod.Error())
		case serving < 0 && r.Msg == servertest.MsgServing:
			serving = i
		}
	}
	require.GreaterOrEqual(t, warn, 0, "no warning; log:\n%s", s.LogText(0))
	assert.Less(t, warn, serving, "the warning comes at start, before serving")
	s.Signal(s.First, syscall.SIGTERM)
	assert.Zero(t, s.WaitExit(s.First, 60*time.Second), "exit status")
}

// TestTerminationSignals (issue 11): the signal sequences around the
// shutdown delay.
func TestTerminationSignals(t *testing.T) {
	const delay = 2 * time.Second
	args := []string{"-health-addr", "127.0.0.1:0", "-shutdown-delay", delay.String(), "-drain-timeout", "20s"}

	// preStop, then SIGTERM during the delay: no second delay, no
	// immediate stop (for the signal handling the SIGTERM is the first
	// stop), one drain when the delay ends, exit 0.
	t.Run("preStop then SIGTERM during the delay", func(t *testing.T) {
		s, healthAddr := startKubernetes(t, servertest.Options{}, args...)
		from := s.Mark()
		call := callPreStop(healthAddr)
		s.WaitRecord(from, 10*time.Second, healthEvent(health.EventStopping))
		s.Signal(s.First, syscall.SIGTERM)
		s.WaitRecord(from, 10*time.Second, func(r servertest.Record) bool {
			return r.Msg == servertest.MsgStopping && strings.Contains(r.Error, "terminated")
		})
		_, drainedEarly := s.FindRecord(from, 0, healthEvent(health.EventDraining))
		require.False(t, drainedEarly, "the delay ended before the SIGTERM was handled (a loaded machine?)")
		s.WaitRecord(from, delay+30*time.Second, healthEvent(health.EventDraining))
		r := waitPreStop(t, call)
		require.NoError(t, r.err)
		assert.Equal(t, ok200, r.code)
		assert.Zero(t, s.WaitExit(s.First, 60*time.Second), "exit status")
		assert.Equal(t, 1, countRecords(s, from, healthEvent(health.EventStopping)), "terminations")
		assert.Equal(t, 1, countRecords(s, from, healthEvent(health.EventDraining)), "drains")
		assert.Zero(t, countRecords(s, from, func(r servertest.Record) bool { return r.Msg == "handoff: stopping at once" }), "immediate stops")
	})

	// SIGTERM, then SIGTERM or SIGQUIT during the delay: the second stops
	// at once (the delay is not served out).
	for _, second := range []syscall.Signal{syscall.SIGTERM, syscall.SIGQUIT} {
		t.Run("SIGTERM then "+second.String(), func(t *testing.T) {
			s, _ := startKubernetes(t, servertest.Options{}, "-health-addr", "127.0.0.1:0", "-shutdown-delay", "1m", "-drain-timeout", "20s")
			from := s.Mark()
			s.Signal(s.First, syscall.SIGTERM)
			s.WaitRecord(from, 10*time.Second, healthEvent(health.EventStopping))
			start := time.Now()
			s.Signal(s.First, second)
			code := s.WaitExit(s.First, 30*time.Second)
			assert.Less(t, time.Since(start), 30*time.Second, "the delay was served out")
			assert.NotZero(t, code, "exit status after an immediate stop")
			s.WaitRecord(from, 0, func(r servertest.Record) bool { return r.Msg == "handoff: stopping at once" })
		})
	}

	// A stop (SIGTERM, or the preStop hook), then SIGHUP during the delay:
	// the upgrade is refused and logged (by the signal dispatcher after a
	// stop signal, by Run after a preStop call, which the dispatcher does
	// not see); no process is started; the delay ends as planned, exit 0.
	for _, by := range []string{"SIGTERM", "preStop"} {
		t.Run(by+" then SIGHUP during the delay", func(t *testing.T) {
			s, healthAddr := startKubernetes(t, servertest.Options{}, args...)
			from := s.Mark()
			var call <-chan preStopCall
			if by == "SIGTERM" {
				s.Signal(s.First, syscall.SIGTERM)
			} else {
				call = callPreStop(healthAddr)
			}
			s.WaitRecord(from, 10*time.Second, healthEvent(health.EventStopping))
			s.Install("")
			s.Signal(s.First, syscall.SIGHUP)
			refused := s.WaitRecord(from, 10*time.Second, func(r servertest.Record) bool {
				return r.Msg == "handoff: upgrade refused" || strings.HasPrefix(r.Msg, "signal: upgrade dropped")
			})
			assert.Contains(t, refused.Raw, `"level":"WARN"`)
			assert.Contains(t, refused.Raw, "stopping")
			_, drainedEarly := s.FindRecord(from, 0, healthEvent(health.EventDraining))
			require.False(t, drainedEarly, "the delay ended before the SIGHUP was handled (a loaded machine?)")
			assert.Empty(t, servertest.Children(s.First), "a process was started")
			if call != nil {
				r := waitPreStop(t, call)
				require.NoError(t, r.err)
				assert.Equal(t, ok200, r.code)
			}
			assert.Zero(t, s.WaitExit(s.First, 60*time.Second), "exit status")
			assert.Zero(t, countRecords(s, from, eventOf(s.First, "triggered")), "an upgrade started")
		})
	}

	// SIGHUP (an upgrade in its probation), then SIGTERM: the upgrade is
	// rolled back at once, not at the end of the delay; the old
	// generation serves the delay out and exits 0, and the load loses
	// nothing.
	t.Run("SIGHUP then SIGTERM during the probation", func(t *testing.T) {
		s, _ := startKubernetes(t, servertest.Options{}, append(args, "-probation", "30s")...)
		load := upgradertest.MixedConfig(s.Addr)
		stopLoad := upgradertest.Start(t.Context(), load)
		from := s.Mark()
		s.Install("")
		s.Signal(s.First, syscall.SIGHUP)
		probation := s.WaitRecord(from, 60*time.Second, func(r servertest.Record) bool {
			return r.PID == s.First && r.Event == "accepting"
		})
		child := probation.TargetPID
		require.NotZero(t, child)
		s.Signal(s.First, syscall.SIGTERM)
		rolledBack := s.WaitRecord(from, 30*time.Second, eventOf(s.First, "rolled-back"))
		assert.NotEmpty(t, rolledBack.Error, "a rollback says why")
		s.WaitRecord(from, delay+30*time.Second, healthEvent(health.EventDraining))
		r := stopLoad()
		t.Log(r.Summary())
		assert.NoError(t, r.Check(load))
		assert.Zero(t, s.WaitExit(s.First, 60*time.Second), "exit status")
		_, err := servertest.WaitPID(child, 30*time.Second)
		var notChild *servertest.NotChildError
		if err != nil && !errors.As(err, &notChild) {
			t.Errorf("the rolled-back generation %d: %v", child, err)
		}
		assert.Empty(t, servertest.Descendants(s.Bin), "processes left")
	})
}

// TestHealthHandedOver (issue 11): on an in-place upgrade (outside a
// container) the health port is handed to the new generation with the
// other sockets: the probes, made on new connections every few
// milliseconds throughout, never fail, and the new generation answers them
// and its preStop endpoint.
func TestHealthHandedOver(t *testing.T) {
	healthAddr := freeAddr(t)
	s, _ := startKubernetes(t, servertest.Options{}, "-health-addr", healthAddr, "-shutdown-delay", "500ms", "-drain-timeout", "20s")
	ctx, cancel := context.WithCancel(t.Context())
	var probes, failed atomic.Int64
	var firstFailure atomic.Pointer[string]
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			code, err := probeHTTP(healthAddr, health.PathReady)
			probes.Add(1)
			if err != nil || code != ok200 {
				failed.Add(1)
				msg := http.StatusText(code)
				if err != nil {
					msg = err.Error()
				}
				firstFailure.CompareAndSwap(nil, &msg)
			}
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	s.Install("")
	newPID := s.Upgrade()
	// Probes answered by the new generation alone.
	n := probes.Load()
	require.Eventually(t, func() bool { return probes.Load() >= n+20 }, 30*time.Second, 10*time.Millisecond)
	cancel()
	<-done
	if !assert.Zero(t, failed.Load(), "failed probes of %d", probes.Load()) {
		t.Logf("first failure: %s; log:\n%s", *firstFailure.Load(), s.LogText(0))
	}

	from := s.Mark()
	r := waitPreStop(t, callPreStop(healthAddr))
	require.NoError(t, r.err)
	assert.Equal(t, ok200, r.code)
	s.WaitRecord(from, 10*time.Second, func(r servertest.Record) bool { return r.PID == newPID && r.Event == health.EventDrained.String() })
	s.Signal(newPID, syscall.SIGTERM)
	assert.Zero(t, s.WaitExit(newPID, 60*time.Second), "exit status")
}

// TestPID1RefusesUpgrade (issue 11 b.4): as PID 1 of its PID namespace, as
// in a container, the server refuses SIGHUP (the container would end with
// the old generation), logs why, and serves on; no process is started.
func TestPID1RefusesUpgrade(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("CLONE_NEWPID needs root") // the CI runs as root: fail, never skip
	}
	s, _ := startKubernetes(t, servertest.Options{NewPIDNamespace: true}, "-health-addr", "127.0.0.1:0", "-shutdown-delay", "0")
	from := s.Mark()
	assert.Equal(t, "1", strings.TrimSpace(servertest.Get(t, "tcp", s.Addr, "/pid")), "the server is PID 1 of its namespace")
	s.Install("")
	s.Signal(s.First, syscall.SIGHUP)
	refused := s.WaitRecord(from, 10*time.Second, func(r servertest.Record) bool { return r.Msg == "handoff: upgrade refused" })
	assert.Contains(t, refused.Error, "PID 1")
	assert.Contains(t, refused.Raw, `"level":"ERROR"`)
	assert.Equal(t, "1", strings.TrimSpace(servertest.Get(t, "tcp", s.Addr, "/pid")), "serving on after the refusal")
	assert.Empty(t, servertest.Children(s.First), "a process was started")
	assert.Zero(t, countRecords(s, from, func(r servertest.Record) bool { return r.Event == "spawned" }), "an upgrade started")
	s.Signal(s.First, syscall.SIGTERM)
	assert.Zero(t, s.WaitExit(s.First, 60*time.Second), "exit status")
}
