package plugin_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"syscall"
	"time"

	"github.com/handoff-go/handoff/plugin"
	goplugin "github.com/hashicorp/go-plugin"
)

// Greeter is the interface the host calls; the plugin map's GRPCClient
// returns an implementation of it.
type Greeter interface {
	Greet(ctx context.Context, name string) (string, error)
}

// Shared with the plugin, as go-plugin's examples do.
var (
	handshake = goplugin.HandshakeConfig{ProtocolVersion: 1, MagicCookieKey: "GREETER", MagicCookieValue: "hello"}
	plugins   goplugin.PluginSet // {"greeter": &GreeterGRPCPlugin{}}
)

// A host that swaps in whatever binary is written to the watched path, or
// on SIGUSR2, first as a 10 % canary.
func Example() {
	ctx := context.Background()
	m, err := plugin.New(ctx, plugin.Options[Greeter]{
		Handshake: handshake,
		Plugins:   plugins,
		Path:      "/srv/plugins/greeter",
		Watch:     true,
		Signals:   []os.Signal{syscall.SIGUSR2},
		Canary:    plugin.CanaryOptions{Percent: 10, PromoteAfter: 10 * time.Minute},
		OnEvent: func(e plugin.Event) {
			if e.Kind == plugin.EventCanaryRolledBack {
				log.Printf("canary %s rolled back: %s", e.Version, e.Reason)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()

	// Per request: the user id keeps one user on one version.
	var msg string
	err = m.Call(ctx, "user-42", func(g Greeter) error {
		msg, err = g.Greet(ctx, "Ann")
		return err
	})
	fmt.Println(msg, err)
}
