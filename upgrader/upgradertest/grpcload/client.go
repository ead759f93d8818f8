package grpcload

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// Clients returns the clients of the GRPCUnary and GRPCStream workers, to
// put in upgradertest.Config.Clients. Each worker has a grpc.ClientConn of
// its own to target (such as "127.0.0.1:9000"), over TLS with tlsConfig
// (put the pool of upgradertest.WriteCert in its RootCAs), or in
// cleartext when tlsConfig is nil.
//
// A GRPCUnary worker calls PIDMethod; a GRPCStream worker calls
// StreamMethod for the Config's StreamTime. Each RPC is made once, with
// no retry policy (service configs are ignored and retries disabled) and
// fail-fast, under the Config's Timeout (streams: StreamTime + Timeout).
// An RPC that fails is classified by its status code: DeadlineExceeded is
// Timeout, Unavailable is Unavailable, any other code is Non2xx; a stream
// that fails after its first message, or ends without its "done", is
// Truncated.
//
// grpc-go still retries, transparently, an RPC whose stream the server
// refused unprocessed (a GOAWAY, REFUSED_STREAM): those are invisible
// here. Count them with the H2TLS and H2C kinds of upgradertest.
func Clients(target string, tlsConfig *tls.Config) map[upgradertest.Kind]func(upgradertest.Config) upgradertest.Client {
	newClient := func(k upgradertest.Kind) func(upgradertest.Config) upgradertest.Client {
		return func(cfg upgradertest.Config) upgradertest.Client {
			creds := insecure.NewCredentials()
			if tlsConfig != nil {
				creds = credentials.NewTLS(tlsConfig)
			}
			cc, err := grpc.Dial(target,
				grpc.WithTransportCredentials(creds),
				grpc.WithDisableServiceConfig(),
				grpc.WithDisableRetry(),
			)
			return &client{kind: k, cfg: cfg, cc: cc, err: err}
		}
	}
	return map[upgradertest.Kind]func(upgradertest.Config) upgradertest.Client{
		upgradertest.GRPCUnary:  newClient(upgradertest.GRPCUnary),
		upgradertest.GRPCStream: newClient(upgradertest.GRPCStream),
	}
}

// client is the client of one GRPCUnary or GRPCStream worker.
type client struct {
	kind upgradertest.Kind
	cfg  upgradertest.Config
	cc   *grpc.ClientConn
	err  error // of grpc.Dial, which then fails every request
}

func (c *client) Request() (upgradertest.Class, string, error) {
	if c.err != nil {
		return upgradertest.Other, "", c.err
	}
	if c.kind == upgradertest.GRPCStream {
		return c.stream()
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	out := new(wrapperspb.StringValue)
	if err := c.cc.Invoke(ctx, PIDMethod, &emptypb.Empty{}, out); err != nil {
		return classOf(err), "", err
	}
	return upgradertest.OK, out.GetValue(), nil
}

func (c *client) stream() (upgradertest.Class, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.StreamTime+c.cfg.Timeout)
	defer cancel()
	s, err := c.cc.NewStream(ctx, &grpc.StreamDesc{StreamName: "Stream", ServerStreams: true}, StreamMethod)
	if err != nil {
		return classOf(err), "", err
	}
	if err := s.SendMsg(wrapperspb.Int64(c.cfg.StreamTime.Milliseconds())); err != nil && !errors.Is(err, io.EOF) {
		return classOf(err), "", err
	}
	// SendMsg's io.EOF means the stream has ended: RecvMsg says how.
	if err := s.CloseSend(); err != nil {
		return classOf(err), "", err
	}
	var pid, last string
	for n := 0; ; n++ {
		m := new(wrapperspb.StringValue)
		err := s.RecvMsg(m)
		switch {
		case errors.Is(err, io.EOF):
			if last != "done" {
				return upgradertest.Truncated, "", errors.New("stream ended without done")
			}
			return upgradertest.OK, pid, nil
		case err != nil && n > 0:
			return upgradertest.Truncated, "", err
		case err != nil:
			return classOf(err), "", err
		}
		last = m.GetValue()
		if f := strings.Fields(last); len(f) == 4 && f[2] == "pid" {
			pid = f[3]
		}
	}
}

func (c *client) Close() {
	if c.cc != nil {
		c.cc.Close()
	}
}

// classOf classifies the error of an RPC by its status code.
func classOf(err error) upgradertest.Class {
	switch status.Code(err) {
	case codes.DeadlineExceeded:
		return upgradertest.Timeout
	case codes.Unavailable:
		return upgradertest.Unavailable
	}
	return upgradertest.Non2xx
}
