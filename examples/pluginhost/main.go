// Command pluginhost is an HTTP server whose answers come from a go-plugin
// plugin that can be replaced while it serves: build a new plugin binary to
// the watched path and the next requests are answered by it, with none
// failed. See README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	ossignal "os/signal"
	"syscall"
	"time"

	"github.com/handoff-go/handoff/examples/pluginhost/greeter"
	"github.com/handoff-go/handoff/plugin"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	path := flag.String("plugin", "./greeter", "plugin binary; watched for new versions")
	canary := flag.Float64("canary", 0, "percent of users a new version answers first (0: swap at once)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*addr, *path, *canary, log); err != nil {
		log.Error("pluginhost", "err", err)
		os.Exit(1)
	}
}

func run(addr, path string, canary float64, log *slog.Logger) error {
	ctx, stop := ossignal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	m, h, err := newHost(ctx, path, canary, log, nil)
	if err != nil {
		return err
	}
	defer m.Close()
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("pluginhost serving", "addr", addr, "plugin", path)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newHost starts the plugin manager and returns the HTTP handler:
//
//	GET /?name=Ann     the plugin's greeting (header X-Plugin-Version)
//	GET /versions      the versions loaded, as JSON
//
// The user's name is the canary key, so one user stays on one version.
func newHost(ctx context.Context, path string, canary float64, log *slog.Logger, onEvent func(plugin.Event)) (*plugin.Manager[greeter.Greeter], http.Handler, error) {
	m, err := plugin.New(ctx, plugin.Options[greeter.Greeter]{
		Handshake: greeter.Handshake,
		Plugins:   greeter.Plugins(nil),
		Path:      path,
		Watch:     true,
		Signals:   []os.Signal{syscall.SIGHUP},
		Canary:    plugin.CanaryOptions{Percent: canary, PromoteAfterCalls: 100},
		Logger:    log,
		OnEvent:   onEvent,
	})
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		var msg, ver string
		err := m.Call(r.Context(), name, func(g greeter.Greeter) error {
			var err error
			if ver, err = g.Version(r.Context()); err != nil {
				return err
			}
			msg, err = g.Greet(r.Context(), name)
			return err
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("X-Plugin-Version", ver)
		fmt.Fprintln(w, msg)
	})
	mux.HandleFunc("GET /versions", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		type view struct {
			plugin.Version
			Err string `json:",omitempty"`
		}
		var out []view
		for _, v := range m.Versions() {
			e := ""
			if v.Err != nil {
				e = v.Err.Error()
			}
			out = append(out, view{v, e})
		}
		_ = enc.Encode(out)
	})
	return m, mux, nil
}
