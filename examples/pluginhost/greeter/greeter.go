// Package greeter is the contract between the pluginhost example and its
// plugin: the Go interface the host calls, the go-plugin handshake and plugin
// map, and a gRPC service written by hand (a grpc.ServiceDesc over
// wrapperspb messages), so the example needs no protoc.
package greeter

import (
	"context"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Greeter is what the host calls.
type Greeter interface {
	Greet(ctx context.Context, name string) (string, error)
	Version(ctx context.Context) (string, error)
}

// Handshake must match on both sides; change ProtocolVersion when the
// interface changes incompatibly.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "PLUGINHOST_PLUGIN",
	MagicCookieValue: "greeter",
}

// Name is the greeter's key in the plugin map.
const Name = "greeter"

// Plugins is the plugin map; impl is nil on the host side.
func Plugins(impl Greeter) goplugin.PluginSet {
	return goplugin.PluginSet{Name: &grpcPlugin{impl: impl}}
}

type grpcPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	impl Greeter
}

func (p *grpcPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	s.RegisterService(&desc, p.impl)
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return client{c}, nil
}

const service = "pluginhost.Greeter"

var desc = grpc.ServiceDesc{
	ServiceName: service,
	HandlerType: (*Greeter)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Greet", Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				s, err := srv.(Greeter).Greet(ctx, req.(*wrapperspb.StringValue).GetValue())
				return wrapperspb.String(s), err
			}
			if icpt == nil {
				return h(ctx, in)
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + service + "/Greet"}, h)
		}},
		{MethodName: "Version", Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, _ any) (any, error) {
				s, err := srv.(Greeter).Version(ctx)
				return wrapperspb.String(s), err
			}
			if icpt == nil {
				return h(ctx, in)
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + service + "/Version"}, h)
		}},
	},
	Metadata: "greeter.go",
}

type client struct{ c *grpc.ClientConn }

func (c client) Greet(ctx context.Context, name string) (string, error) {
	out := new(wrapperspb.StringValue)
	err := c.c.Invoke(ctx, "/"+service+"/Greet", wrapperspb.String(name), out)
	return out.GetValue(), err
}

func (c client) Version(ctx context.Context) (string, error) {
	out := new(wrapperspb.StringValue)
	err := c.c.Invoke(ctx, "/"+service+"/Version", new(emptypb.Empty), out)
	return out.GetValue(), err
}
