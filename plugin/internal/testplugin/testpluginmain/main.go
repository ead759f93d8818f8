// Command testpluginmain is the greeter plugin binary of the plugin package's
// tests. The variant is set at build time:
//
//	go build -ldflags "-X main.variant=v2" ./plugin/internal/testplugin/testpluginmain
//
// Variants: any version name (v1, v2, ...), "unhealthy" (fails Health),
// "erroring" (fails Greet), "badhandshake" (serves with a wrong magic cookie,
// so the host refuses it), "hang" (never completes the handshake; exits by
// itself after a minute).
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/handoff-go/handoff/plugin/internal/testplugin"
	goplugin "github.com/hashicorp/go-plugin"
)

var variant = "v1"

func main() {
	if variant == "hang" {
		time.Sleep(time.Minute)
		return
	}
	hs := testplugin.Handshake
	if variant == "badhandshake" {
		hs.MagicCookieValue = "not-the-greeter"
	}
	fmt.Fprintf(os.Stderr, "testplugin %s starting, pid %d\n", variant, os.Getpid())
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig: hs,
		Plugins:         testplugin.Plugins(testplugin.Server{Variant: variant}),
		GRPCServer:      goplugin.DefaultGRPCServer,
	})
}
