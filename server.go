package handoff

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/handoff-go/handoff/health"
	"github.com/handoff-go/handoff/listener"
	"github.com/handoff-go/handoff/upgrader"
)

// A Server is one server and the addresses it serves on, for Run. Make one
// with HTTP or GRPC.
type Server struct {
	name  string
	addrs []string
	lns   []*listener.Listener // Run's, once listening
	// setup prepares the server before it serves (hooks, base context,
	// the termination policy's handler).
	setup func(u *upgrader.Upgrader, p *health.Policy)
	// serve serves on ln until the server stops or ln closes.
	serve func(ln net.Listener) error
	// closed reports whether err from serve is the normal end of serving.
	closed func(err error) bool
	// stop ends the server gracefully once its listeners no longer accept
	// and only connections it must end itself are left (HTTP/2 for an
	// http.Server: Shutdown sends them a GOAWAY); at ctx's end it
	// force-closes.
	stop func(ctx context.Context) error
	// early: stop must run as soon as the listeners stop accepting, in
	// parallel with the drain (the server's connections do not end
	// otherwise), and the server cannot serve again afterwards.
	early bool
}

// HTTP serves srv on addrs, or on srv.Addr when there are none (":http", or
// ":https" with TLS, when that is empty too). An address is "host:port"
// (TCP), "tcp4:host:port", "tcp6:[host]:port", "unix:/path/to.sock", or
// "systemd:NAME" for a socket systemd passed under FileDescriptorName=NAME.
//
// With srv.TLSConfig holding a certificate (Certificates, GetCertificate or
// GetConfigForClient), srv serves TLS with HTTP/2; with srv.Protocols
// allowing unencrypted HTTP/2, it serves h2c. Run configures srv
// (listener.ConfigureServer, and a BaseContext that carries the Upgrader, see
// upgrader.FromContext) before it serves; do not start serving it yourself.
//
// Its drain: HTTP/1 connections end as the listener package drains them (no
// request lost); then srv.Shutdown sends every HTTP/2 connection a GOAWAY,
// lets its streams finish and closes it.
func HTTP(srv *http.Server, addrs ...string) Server {
	tlsOn := tlsConfigured(srv.TLSConfig)
	if len(addrs) == 0 {
		a := srv.Addr
		if a == "" {
			a = ":http"
			if tlsOn {
				a = ":https"
			}
		}
		addrs = []string{a}
	}
	return Server{
		name:  "http",
		addrs: addrs,
		setup: func(u *upgrader.Upgrader, p *health.Policy) {
			listener.ConfigureServer(srv)
			// Connection: close during the shutdown delay.
			srv.Handler = p.Wrap(srv.Handler)
			prev := srv.BaseContext
			srv.BaseContext = func(ln net.Listener) context.Context {
				ctx := context.Background()
				if prev != nil {
					ctx = prev(ln)
				}
				return upgrader.NewContext(ctx, u)
			}
		},
		serve: func(ln net.Listener) error {
			if tlsOn {
				return srv.ServeTLS(ln, "", "")
			}
			return srv.Serve(ln)
		},
		closed: func(err error) bool {
			return errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed)
		},
		stop: func(ctx context.Context) error {
			err := srv.Shutdown(ctx)
			if err != nil {
				_ = srv.Close()
			}
			return err
		},
	}
}

// GRPCServer is what Run needs of a gRPC server; *grpc.Server
// (google.golang.org/grpc) has these methods.
type GRPCServer interface {
	Serve(net.Listener) error
	GracefulStop()
	Stop()
}

// GRPC serves srv on addrs (see HTTP for their form; at least one is
// needed). Its drain: once the listeners no longer accept, GracefulStop
// sends every connection a GOAWAY and waits for the calls in flight; at the
// drain deadline Stop ends the rest.
//
// GracefulStop cannot be undone, so a generation that serves gRPC does not
// take charge again if its successor dies while it drains (see
// upgrader.ErrReclaimed): after that the service is down until restarted.
func GRPC(srv GRPCServer, addrs ...string) Server {
	return Server{
		name:   "grpc",
		addrs:  addrs,
		setup:  func(*upgrader.Upgrader, *health.Policy) {},
		serve:  srv.Serve,
		closed: func(err error) bool { return err == nil || errors.Is(err, net.ErrClosed) },
		stop: func(ctx context.Context) error {
			done := make(chan struct{})
			go func() {
				defer close(done)
				srv.GracefulStop()
			}()
			select {
			case <-done:
				return nil
			case <-ctx.Done():
				srv.Stop()
				<-done
				return fmt.Errorf("handoff: gRPC calls cut at the drain deadline: %w", context.Cause(ctx))
			}
		},
		early: true,
	}
}

// listen opens (or adopts) the socket for one address of a Server.
func listen(u *upgrader.Upgrader, spec string) (*listener.Listener, error) {
	if n, a, ok := strings.Cut(spec, ":"); ok {
		switch n {
		case "tcp", "tcp4", "tcp6", "unix":
			return u.Listen(n, a)
		case "systemd":
			return u.ListenActivated(a)
		}
	}
	return u.Listen("tcp", spec)
}

// tlsConfigured reports whether c can serve TLS on its own.
func tlsConfigured(c *tls.Config) bool {
	return c != nil && (len(c.Certificates) > 0 || c.GetCertificate != nil || c.GetConfigForClient != nil)
}
