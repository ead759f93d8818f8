package plugin_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
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

// A host that swaps its plugin, first as a 10 % canary, whenever a new
// binary is written to the plugin's path (Watch), and on SIGUSR2 (Reload,
// passed to handoff.Options.Reload). examples/pluginhost is this program in
// full, served with handoff.Run.
func Example() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	m, err := plugin.New(context.Background(), plugin.Options[Greeter]{
		Handshake: handshake,
		Plugins:   plugins,
		Path:      "/srv/plugins/greeter",
		Canary:    plugin.CanaryOptions{Percent: 10, PromoteAfter: 10 * time.Minute},
		Logger:    log,
	})
	if err != nil {
		log.Error("plugin", "error", err)
		os.Exit(1)
	}
	defer m.Close() // ends Watch, and waits for it

	// The file watcher runs until Close.
	go func() {
		if err := m.Watch(context.Background()); !errors.Is(err, plugin.ErrClosed) {
			log.Error("plugin watch", "error", err)
		}
	}()

	// SIGUSR2: handoff.Run(ctx, handoff.Options{Reload: m.Reload}, ...).
	var reload func(context.Context) error = m.Reload
	_ = reload

	srv := &http.Server{Addr: ":8080", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The user's id keeps one user on one version.
		var msg string
		err := m.Call(r.Context(), r.URL.Query().Get("user"), func(g Greeter) error {
			var err error
			msg, err = g.Greet(r.Context(), r.URL.Query().Get("name"))
			return err
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, msg)
	})}
	if err := srv.ListenAndServe(); err != nil {
		log.Error("serve", "error", err)
	}
}

// Swap, Rollback and Versions, for an admin endpoint.
func ExampleManager_Swap() {
	var m *plugin.Manager[Greeter] // from plugin.New
	ctx := context.Background()
	v, err := m.Swap(ctx, "/srv/releases/greeter-1.4.2")
	if err != nil {
		log.Printf("refused: %v", err) // a *plugin.LoadError; the serving version stays
		return
	}
	log.Printf("serving %s (sha256 %s)", v.ID, v.SHA256)
	if _, err := m.Rollback(ctx); err != nil {
		log.Print(err)
	}
	for _, v := range m.Versions() {
		log.Printf("%s %s since %s", v.ID, v.State, v.Serving.Format(time.RFC3339))
	}
}
