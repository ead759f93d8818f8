// Package grpcload is the gRPC part of package upgradertest's load: a test
// service for the server under load (Register) and the clients of the
// kinds GRPCUnary and GRPCStream (Clients), which share upgradertest's
// Config, Sample, Result and Class with the HTTP clients, so that one
// upgradertest.Run puts HTTP/1.1, HTTP/2 and gRPC load on a server and
// counts them together:
//
//	cfg := upgradertest.Config{
//		Addr:    httpAddr,
//		Workers: map[upgradertest.Kind]int{upgradertest.H2C: 2, upgradertest.GRPCUnary: 2, upgradertest.GRPCStream: 1},
//		Clients: grpcload.Clients(grpcAddr, nil),
//	}
//	res := upgradertest.Run(ctx, cfg)
//
// It is a package of its own so that a program that imports upgradertest
// only (for its Handler, say) does not link gRPC.
//
// The service has no generated code: its messages are protobuf's
// well-known wrappers, and its description is written by hand.
package grpcload

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ServiceName is the full name of the test service.
const ServiceName = "handoff.upgradertest.Load"

// The full names of the methods, as a client calls them.
const (
	// PIDMethod is unary: google.protobuf.Empty in, the pid of the server
	// as a google.protobuf.StringValue out.
	PIDMethod = "/" + ServiceName + "/PID"
	// StreamMethod is server-streaming: google.protobuf.Int64Value N in,
	// then google.protobuf.StringValue messages "line <i> pid <pid>" every
	// 100 ms for N ms (bounded to 0..600000), then a last one "done".
	StreamMethod = "/" + ServiceName + "/Stream"
)

// maxStream bounds the length of a stream, so that every stream ends by
// itself: a stream that never ended would hold GracefulStop until its
// deadline.
const maxStream = 600 * time.Second

// Register registers the test service on s (a *grpc.Server): the methods
// PIDMethod and StreamMethod. The service is safe for concurrent use. It
// does not register gRPC's health service: that is the server's to do.
func Register(s grpc.ServiceRegistrar) {
	s.RegisterService(&serviceDesc, &service{pid: strconv.Itoa(os.Getpid())})
}

// loadServer is the interface that RegisterService checks the service
// against.
type loadServer interface {
	pidOf() string
}

type service struct{ pid string }

func (s *service) pidOf() string { return s.pid }

var serviceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*loadServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "PID",
		Handler:    pidHandler,
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		Handler:       streamHandler,
		ServerStreams: true,
	}},
}

func pidHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(emptypb.Empty)
	if err := dec(in); err != nil {
		return nil, err
	}
	handle := func(ctx context.Context, req any) (any, error) {
		return wrapperspb.String(srv.(loadServer).pidOf()), nil
	}
	if interceptor == nil {
		return handle(ctx, in)
	}
	return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: PIDMethod}, handle)
}

func streamHandler(srv any, stream grpc.ServerStream) error {
	in := new(wrapperspb.Int64Value)
	if err := stream.RecvMsg(in); err != nil {
		return err
	}
	d := time.Duration(min(max(in.GetValue(), 0), maxStream.Milliseconds())) * time.Millisecond
	pid := srv.(loadServer).pidOf()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		if err := stream.SendMsg(wrapperspb.String(fmt.Sprintf("line %d pid %s", i, pid))); err != nil {
			return err
		}
		select {
		case <-tick.C:
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
	}
	return stream.SendMsg(wrapperspb.String("done"))
}
