//go:build linux

package handoff_test

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/internal/servertest"
	"github.com/handoff-go/handoff/upgrader/upgradertest"
	"github.com/handoff-go/handoff/upgrader/upgradertest/grpcload"
)

// TestHTTP2AndGRPCUnderLoad (issue 9 c): 50 upgrades under HTTP/1.1, HTTP/2
// and gRPC load at once: HTTP/2 over TLS and h2c with many streams on one
// connection, many short-lived HTTP/2 connections that go idle, gRPC unary
// and server-streaming calls. No request fails, and every HTTP/2
// connection the server ends gets a GOAWAY first; streams refused as
// unprocessed after a GOAWAY (safe to retry, RFC 9113 §6.8) are counted
// apart.
func TestHTTP2AndGRPCUnderLoad(t *testing.T) {
	for _, idleTLS := range []bool{false, true} {
		name := "idle-h2c"
		if idleTLS {
			name = "idle-tls"
		}
		t.Run(name, func(t *testing.T) {
			upgrades := 25 // 50 in all: half with idle h2c connections, half with TLS
			if testing.Short() {
				upgrades = 3
			}
			cert, key, pool, err := upgradertest.WriteCert(t.TempDir())
			require.NoError(t, err)
			s, _ := servertest.Start(t, httpserver, servertest.Options{Args: []string{
				"-h2c", "-tls-addr", "127.0.0.1:0", "-tls-cert", cert, "-tls-key", key,
				"-grpc", "127.0.0.1:0", "-drain-timeout", "20s"}})
			serving := s.WaitRecord(0, 10*time.Second, func(r servertest.Record) bool { return r.Msg == servertest.MsgServing })
			require.Len(t, serving.Addrs, 3, "plain, TLS and gRPC addresses: %s", serving.Raw)
			load := upgradertest.Config{
				Addr:    serving.Addrs[0],
				TLSAddr: serving.Addrs[1],
				TLS:     &tls.Config{RootCAs: pool},
				Workers: map[upgradertest.Kind]int{
					upgradertest.KeepAliveChecked: 2,
					upgradertest.KeepAliveBlind:   2,
					upgradertest.NewConn:          2,
					upgradertest.Stream:           1,
					upgradertest.H2TLS:            2,
					upgradertest.H2C:              2,
					upgradertest.H2Idle:           6,
					upgradertest.GRPCUnary:        2,
					upgradertest.GRPCStream:       2,
				},
				H2Streams:  8,
				H2Stream:   1,
				IdleTime:   300 * time.Millisecond,
				IdleTLS:    idleTLS,
				Pause:      2 * time.Millisecond,
				StreamTime: 2 * time.Second,
				Clients:    grpcload.Clients(serving.Addrs[2], nil),
			}
			stop := upgradertest.Start(t.Context(), load)
			for range upgrades {
				s.Upgrade()
			}
			r := stop()
			t.Log(r.Summary())
			t.Logf("HTTP/2 connections: %d opened, %d ended with a GOAWAY, %d without; streams refused unprocessed after a GOAWAY: %d",
				r.H2.Opened, r.H2.GoAway, r.H2.NoGoAway, r.Unprocessed())
			for k, n := range load.Workers {
				if n > 0 {
					t.Logf("%s: %d", k, r.Count(k))
					assert.NotZero(t, r.Count(k), "no %s request was made", k)
				}
			}
			assert.Zero(t, r.Failed(), "failed: %v\n%s", r.Failures(), r.FirstFailures(20))
			assert.Zero(t, r.H2.NoGoAway, "HTTP/2 connections closed without a GOAWAY")
			assert.NotZero(t, r.H2.GoAway, "no HTTP/2 connection got a GOAWAY: the test did not see the drains")
			assert.Zero(t, s.Stop())
			assert.Empty(t, servertest.Descendants(s.Bin))
		})
	}
}
