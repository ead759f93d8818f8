// Command plugin is the pluginhost example's greeter plugin. Its version is
// set when it is built, so that v1 and v2 are different binaries:
//
//	go build -ldflags "-X main.version=v2" -o greeter ./examples/pluginhost/plugin
//
// It is started by the host, never by hand.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/handoff-go/handoff/examples/pluginhost/greeter"
	goplugin "github.com/hashicorp/go-plugin"
)

var version = "v1"

type impl struct{}

func (impl) Greet(_ context.Context, name string) (string, error) {
	if name == "" {
		name = "world"
	}
	switch version {
	case "v1":
		return fmt.Sprintf("Hello, %s!", name), nil
	default:
		return fmt.Sprintf("Hello, %s! (greeted by %s)", name, version), nil
	}
}

func (impl) Version(context.Context) (string, error) { return version, nil }

func main() {
	// Anything written to stderr ends up in the host's log.
	fmt.Fprintf(os.Stderr, "greeter %s serving, pid %d\n", version, os.Getpid())
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: greeter.Handshake,
		Plugins:         greeter.Plugins(impl{}),
		GRPCServer:      goplugin.DefaultGRPCServer,
	})
}
