package health_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/handoff-go/handoff/health"
)

// status asks gRPC's health service what it says of service.
func status(t *testing.T, hs *grpchealth.Server, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := hs.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
	require.NoError(t, err)
	return resp.Status
}

const (
	serving    = healthpb.HealthCheckResponse_SERVING
	notServing = healthpb.HealthCheckResponse_NOT_SERVING
)

// TestGRPC checks gRPC's standard health service (the real one, from
// grpc-go) at each phase, with the readiness flip off and on: NOT_SERVING
// at the moments readiness fails by phase, the program's own statuses in
// between.
func TestGRPC(t *testing.T) {
	for _, flip := range []bool{false, true} {
		t.Run(map[bool]string{false: "flip off", true: "flip on"}[flip], func(t *testing.T) {
			hs := grpchealth.NewServer()
			hs.SetServingStatus("greeter", serving)
			drained := make(chan struct{})
			p := health.New(health.Options{ShutdownDelay: 50 * time.Millisecond, NotReadyOnStop: flip, GRPC: hs,
				Drain: func() { close(drained) }})
			defer p.Close()
			assert.Equal(t, serving, status(t, hs, ""), "starting: gRPC's own default (nothing can connect yet)")
			p.Started()
			assert.Equal(t, serving, status(t, hs, ""), "serving")
			hs.SetServingStatus("greeter", notServing)
			assert.Equal(t, notServing, status(t, hs, "greeter"), "serving: the program's own statuses")
			hs.SetServingStatus("greeter", serving)

			p.Stop(errors.New("SIGTERM"))
			want := serving
			if flip {
				want = notServing
			}
			assert.Equal(t, want, status(t, hs, ""), "delaying")
			assert.Equal(t, want, status(t, hs, "greeter"), "delaying: every service")
			<-drained
			assert.Equal(t, want, status(t, hs, ""), "draining")
			p.Drained()
			assert.Equal(t, notServing, status(t, hs, ""), "stopped")
			assert.Equal(t, notServing, status(t, hs, "greeter"), "stopped: every service")
		})
	}
	t.Run("reclaimed", func(t *testing.T) {
		hs := grpchealth.NewServer()
		p := health.New(health.Options{NotReadyOnStop: true, GRPC: hs})
		defer p.Close()
		p.Started()
		p.Draining() // a hand-over: not a stop
		assert.Equal(t, serving, status(t, hs, ""))
		p.Started()
		assert.Equal(t, serving, status(t, hs, ""))
	})
}

// TestWrapHTTP2: on HTTP/2 (TLS, net/http's server), a response of the
// delay makes the server send a GOAWAY: the next request goes on a new
// connection.
func TestWrapHTTP2(t *testing.T) {
	p := health.New(health.Options{ShutdownDelay: time.Hour})
	defer p.Close()
	srv := httptest.NewUnstartedServer(p.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto+"\n")
	})))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	client := srv.Client()
	client.Transport.(*http.Transport).TLSClientConfig.NextProtos = nil
	defer client.CloseIdleConnections()
	get := func() (reused bool) {
		t.Helper()
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, srv.URL, nil)
		require.NoError(t, err)
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, 2, resp.ProtoMajor, "HTTP/2")
		_, err = io.Copy(io.Discard, resp.Body)
		require.NoError(t, err)
		return reused
	}
	p.Started()
	get()
	assert.True(t, get(), "serving: the connection is reused")
	p.Stop(errors.New("SIGTERM"))
	get() // answered, with a GOAWAY after it
	// The GOAWAY reaches the client's reader a moment after the response.
	assert.Eventually(t, func() bool { return !get() }, 5*time.Second, 10*time.Millisecond,
		"delaying: the next request goes on a new connection")
	assert.Eventually(t, func() bool { return !get() }, 5*time.Second, 10*time.Millisecond,
		"delaying: and so does the one after it")
}
