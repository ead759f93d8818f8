// Package testplugin is the go-plugin plugin the plugin package's tests and
// benchmarks run: a greeter served over gRPC with a hand-written service
// description (no protoc), so both sides share one definition.
package testplugin

import (
	"context"
	"errors"
	"strings"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Handshake is shared by the host (tests) and the plugin binary.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "HANDOFF_TEST_PLUGIN",
	MagicCookieValue: "greeter",
}

// Name is the key of the greeter in the plugin map.
const Name = "greeter"

// Greeter is the interface the host uses.
type Greeter interface {
	// Greet answers "<version>:hello <name>". A name of the form
	// "sleep=<duration>" makes the plugin wait that long first (bounded by
	// ctx), so tests can hold calls in flight.
	Greet(ctx context.Context, name string) (string, error)
	// Version answers the version the binary was built as.
	Version(ctx context.Context) (string, error)
	// Health fails in the "unhealthy" variant.
	Health(ctx context.Context) error
}

// Plugins is the plugin map for both sides. Impl is nil on the host side.
func Plugins(impl Greeter) goplugin.PluginSet {
	return goplugin.PluginSet{Name: &GRPCPlugin{Impl: impl}}
}

// GRPCPlugin implements goplugin.GRPCPlugin for Greeter.
type GRPCPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	Impl Greeter
}

// GRPCServer implements goplugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	s.RegisterService(&serviceDesc, p.Impl)
	return nil
}

// GRPCClient implements goplugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &client{conn: c}, nil
}

const service = "handoff.testplugin.Greeter"

var serviceDesc = grpc.ServiceDesc{
	ServiceName: service,
	HandlerType: (*Greeter)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Greet", Handler: greetHandler},
		{MethodName: "Version", Handler: versionHandler},
		{MethodName: "Health", Handler: healthHandler},
	},
	Metadata: "testplugin.go",
}

func unary(ctx context.Context, srv any, in any, method string, icpt grpc.UnaryServerInterceptor, h grpc.UnaryHandler) (any, error) {
	if icpt == nil {
		return h(ctx, in)
	}
	return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + service + "/" + method}, h)
}

func greetHandler(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
	in := new(wrapperspb.StringValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	return unary(ctx, srv, in, "Greet", icpt, func(ctx context.Context, req any) (any, error) {
		s, err := srv.(Greeter).Greet(ctx, req.(*wrapperspb.StringValue).GetValue())
		if err != nil {
			return nil, err
		}
		return wrapperspb.String(s), nil
	})
}

func versionHandler(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
	in := new(emptypb.Empty)
	if err := dec(in); err != nil {
		return nil, err
	}
	return unary(ctx, srv, in, "Version", icpt, func(ctx context.Context, _ any) (any, error) {
		s, err := srv.(Greeter).Version(ctx)
		if err != nil {
			return nil, err
		}
		return wrapperspb.String(s), nil
	})
}

func healthHandler(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
	in := new(emptypb.Empty)
	if err := dec(in); err != nil {
		return nil, err
	}
	return unary(ctx, srv, in, "Health", icpt, func(ctx context.Context, _ any) (any, error) {
		if err := srv.(Greeter).Health(ctx); err != nil {
			return nil, err
		}
		return new(emptypb.Empty), nil
	})
}

type client struct{ conn *grpc.ClientConn }

func (c *client) Greet(ctx context.Context, name string) (string, error) {
	out := new(wrapperspb.StringValue)
	if err := c.conn.Invoke(ctx, "/"+service+"/Greet", wrapperspb.String(name), out); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

func (c *client) Version(ctx context.Context) (string, error) {
	out := new(wrapperspb.StringValue)
	if err := c.conn.Invoke(ctx, "/"+service+"/Version", new(emptypb.Empty), out); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}

func (c *client) Health(ctx context.Context) error {
	return c.conn.Invoke(ctx, "/"+service+"/Health", new(emptypb.Empty), new(emptypb.Empty))
}

// Server is the plugin side. Variant is the version it answers with;
// the variants "unhealthy" and "erroring" fail Health and Greet.
type Server struct{ Variant string }

// ErrCanary is what the "erroring" variant answers Greet with.
var ErrCanary = errors.New("testplugin: erroring variant")

// Greet implements Greeter.
func (s Server) Greet(ctx context.Context, name string) (string, error) {
	if d, ok := strings.CutPrefix(name, "sleep="); ok {
		if dur, err := time.ParseDuration(d); err == nil {
			t := time.NewTimer(dur)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
	}
	if s.Variant == "erroring" {
		return "", ErrCanary
	}
	return s.Variant + ":hello " + name, nil
}

// Version implements Greeter.
func (s Server) Version(context.Context) (string, error) { return s.Variant, nil }

// Health implements Greeter. The "unhealthy" variant answers
// codes.FailedPrecondition.
func (s Server) Health(context.Context) error {
	if s.Variant == "unhealthy" {
		return status.Error(codes.FailedPrecondition, "testplugin: unhealthy variant")
	}
	return nil
}
