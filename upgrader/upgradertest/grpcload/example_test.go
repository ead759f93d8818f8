package grpcload_test

import (
	"context"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
	"github.com/handoff-go/handoff/upgrader/upgradertest/grpcload"
)

// A server registers the test service beside its own.
func ExampleRegister() {
	ln, err := net.Listen("tcp", "127.0.0.1:9000")
	if err != nil {
		return
	}
	s := grpc.NewServer()
	grpcload.Register(s)
	go s.Serve(ln)
	defer s.GracefulStop()
}

// Put HTTP/1.1, h2c and gRPC load on a server in one run, and count what
// failed. Compiled, not run: it needs a server.
func ExampleClients() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := upgradertest.Run(ctx, upgradertest.Config{
		Addr: "127.0.0.1:8080",
		Workers: map[upgradertest.Kind]int{
			upgradertest.KeepAliveChecked: 4,
			upgradertest.H2C:              2,
			upgradertest.GRPCUnary:        2,
			upgradertest.GRPCStream:       1,
		},
		Clients: grpcload.Clients("127.0.0.1:9000", nil),
	})
	fmt.Println(res.Count(-1), "requests,", res.Failed(), "failed:", res.Failures(), res.Unprocessed(), "unprocessed")
}
