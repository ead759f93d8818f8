package grpcload_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
	"github.com/handoff-go/handoff/upgrader/upgradertest/grpcload"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait for an event in these tests.
const waitTimeout = 20 * time.Second

// startGRPC serves the test service on a loopback listener until the test
// ends.
func startGRPC(t *testing.T, opts ...grpc.ServerOption) (string, *grpc.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := grpc.NewServer(opts...)
	grpcload.Register(s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return ln.Addr().String(), s
}

// afterMessages is a stream interceptor that closes sent once the first
// stream has sent n messages.
func afterMessages(n int, sent chan<- struct{}) grpc.ServerOption {
	var count atomic.Int64
	return grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &notifyStream{ServerStream: ss, sent: func() {
			if count.Add(1) == int64(n) {
				close(sent)
			}
		}})
	})
}

type notifyStream struct {
	grpc.ServerStream
	sent func()
}

func (s *notifyStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	s.sent()
	return err
}

// wait waits for ch to close, or fails the test.
func wait(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func pid() string { return strconv.Itoa(os.Getpid()) }

// countOK counts the OK samples of kind k.
func countOK(r *upgradertest.Result, k upgradertest.Kind) int {
	n := 0
	for _, s := range r.Samples {
		if s.Kind == k && s.Class == upgradertest.OK {
			n++
		}
	}
	return n
}

// TestGRPCSteadyLoad: unary calls and streams against a grpc.Server with
// nothing happening to it: no failure.
func TestGRPCSteadyLoad(t *testing.T) {
	addr, _ := startGRPC(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r := upgradertest.Run(ctx, upgradertest.Config{
		Workers:    map[upgradertest.Kind]int{upgradertest.GRPCUnary: 2, upgradertest.GRPCStream: 2},
		StreamTime: 300 * time.Millisecond,
		Clients:    grpcload.Clients(addr, nil),
	})
	assert.Zero(t, r.Failed(), "failures %v\n%s", r.Failures(), r.FirstFailures(10))
	assert.NotZero(t, countOK(r, upgradertest.GRPCUnary))
	assert.GreaterOrEqual(t, countOK(r, upgradertest.GRPCStream), 2)
	assert.Equal(t, map[string]int{pid(): r.Count(-1)}, r.PIDs())
	for _, s := range r.Samples {
		if s.Kind == upgradertest.GRPCStream {
			assert.Equal(t, upgradertest.OpStream, s.Op)
		}
	}
}

// streamUnder runs one GRPCStream request of 1 s and calls stop on the
// server once the stream has sent 3 messages. (SendMsg returns once the
// message is queued: the client has surely read the first one 200 ms
// later, but not necessarily just after it.)
func streamUnder(t *testing.T, stop func(*grpc.Server)) *upgradertest.Result {
	t.Helper()
	sent := make(chan struct{})
	addr, s := startGRPC(t, afterMessages(3, sent))
	res := make(chan *upgradertest.Result, 1)
	go func() {
		res <- upgradertest.Run(context.Background(), upgradertest.Config{
			Workers:     map[upgradertest.Kind]int{upgradertest.GRPCStream: 1},
			StreamTime:  time.Second,
			MaxRequests: 1,
			Clients:     grpcload.Clients(addr, nil),
		})
	}()
	wait(t, "3 messages of the stream", sent)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		stop(s)
	}()
	wait(t, "the server to stop", stopped)
	select {
	case r := <-res:
		require.Len(t, r.Samples, 1)
		return r
	case <-time.After(waitTimeout):
		t.Fatal("the load did not end")
	}
	return nil
}

// TestGRPCGracefulStopCompletesStream: GracefulStop lets a running stream
// send its last message.
func TestGRPCGracefulStopCompletesStream(t *testing.T) {
	r := streamUnder(t, (*grpc.Server).GracefulStop)
	s := r.Samples[0]
	assert.Equal(t, upgradertest.OK, s.Class, s.Err)
	assert.Equal(t, pid(), s.PID)
	assert.GreaterOrEqual(t, s.Latency, 900*time.Millisecond)
}

// TestGRPCStopTruncatesStream: Stop cuts a running stream, and the client
// sees it.
func TestGRPCStopTruncatesStream(t *testing.T) {
	r := streamUnder(t, (*grpc.Server).Stop)
	assert.Equal(t, 1, r.Failed())
	assert.Equal(t, upgradertest.Truncated, r.Samples[0].Class, r.Samples[0].Err)
}

// TestGRPCFailureClasses: each failure is classified by its status code.
func TestGRPCFailureClasses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	ln.Close()
	slow := grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		<-ctx.Done() // until the client's deadline
		return nil, ctx.Err()
	})
	slowAddr, _ := startGRPC(t, slow)
	bare := grpc.NewServer() // no service: Unimplemented
	bareLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	bareDone := make(chan struct{})
	go func() {
		defer close(bareDone)
		_ = bare.Serve(bareLn)
	}()
	defer func() {
		bare.Stop()
		<-bareDone
	}()

	for _, c := range []struct {
		name string
		addr string
		want upgradertest.Class
	}{
		{"refused", dead, upgradertest.Unavailable},
		{"deadline", slowAddr, upgradertest.Timeout},
		{"unimplemented", bareLn.Addr().String(), upgradertest.Non2xx},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := upgradertest.Run(context.Background(), upgradertest.Config{
				Workers:     map[upgradertest.Kind]int{upgradertest.GRPCUnary: 1, upgradertest.GRPCStream: 1},
				Timeout:     200 * time.Millisecond,
				StreamTime:  10 * time.Millisecond,
				MaxRequests: 1,
				Clients:     grpcload.Clients(c.addr, nil),
			})
			require.Len(t, r.Samples, 2)
			for _, s := range r.Samples {
				if s.Kind == upgradertest.GRPCStream && c.name == "deadline" {
					continue // the interceptor delays unary calls only
				}
				assert.Equal(t, c.want, s.Class, "%s: %s", s.Kind, s.Err)
			}
		})
	}
}

// TestCombinedRun puts HTTP/1.1, HTTP/2 (TLS and h2c) and gRPC (TLS) load
// in one run on servers that serve upgradertest.Handler and Register, and
// gets one Result.
func TestCombinedRun(t *testing.T) {
	certFile, keyFile, pool, err := upgradertest.WriteCert(t.TempDir())
	require.NoError(t, err)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)
	serverTLS := &tls.Config{Certificates: []tls.Certificate{cert}}
	clientTLS := &tls.Config{RootCAs: pool}

	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	var addrs []string
	for _, tlsConfig := range []*tls.Config{nil, serverTLS} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addrs = append(addrs, ln.Addr().String())
		srv := &http.Server{Handler: upgradertest.Handler(), Protocols: &p, TLSConfig: tlsConfig.Clone()} // Serve changes it
		done := make(chan struct{})
		go func() {
			defer close(done)
			if tlsConfig != nil {
				_ = srv.ServeTLS(ln, "", "")
			} else {
				_ = srv.Serve(ln)
			}
		}()
		t.Cleanup(func() {
			srv.Close()
			<-done
		})
	}
	grpcAddr, _ := startGRPC(t, grpc.Creds(credentials.NewTLS(serverTLS)))

	kinds := []upgradertest.Kind{
		upgradertest.KeepAliveChecked, upgradertest.KeepAliveBlind, upgradertest.NewConn, upgradertest.Slow, upgradertest.Stream,
		upgradertest.H2TLS, upgradertest.H2C, upgradertest.H2Idle, upgradertest.GRPCUnary, upgradertest.GRPCStream,
	}
	workers := map[upgradertest.Kind]int{}
	for _, k := range kinds {
		workers[k] = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r := upgradertest.Run(ctx, upgradertest.Config{
		Addr: addrs[0], TLSAddr: addrs[1], TLS: clientTLS,
		Workers:  workers,
		SlowTime: 20 * time.Millisecond, StreamTime: 200 * time.Millisecond, IdleTime: 50 * time.Millisecond,
		Clients: grpcload.Clients(grpcAddr, clientTLS),
	})

	assert.Zero(t, r.Failed(), "failures %v\n%s", r.Failures(), r.FirstFailures(10))
	assert.Zero(t, r.Unprocessed())
	for _, k := range kinds {
		assert.NotZero(t, countOK(r, k), "no %s request", k)
	}
	assert.Equal(t, map[string]int{pid(): r.Count(-1)}, r.PIDs())
	assert.Equal(t, 3, r.H2.Opened)
}
