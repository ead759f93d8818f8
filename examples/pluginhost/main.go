// Command pluginhost is an HTTP server whose answers come from a go-plugin
// plugin, and which changes both without failing a request: it serves with
// handoff.Run (SIGHUP upgrades the host binary, SIGTERM drains and stops),
// and swaps the plugin for a new version when its file changes (Watch) or
// on SIGUSR2 (Reload). See README.md.
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
	"strconv"
	"time"

	"github.com/handoff-go/handoff"
	"github.com/handoff-go/handoff/examples/pluginhost/greeter"
	"github.com/handoff-go/handoff/plugin"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to serve on")
	path := flag.String("plugin", "./greeter", "the plugin binary")
	watch := flag.Bool("watch", true, "swap the plugin when its file changes (SIGUSR2 always does)")
	canary := flag.Float64("canary", 0, "percent of the names a new plugin version answers first (0: swap at once)")
	pidFile := flag.String("pidfile", "", "PID file naming the generation in charge")
	logJSON := flag.Bool("log-json", false, "log JSON records instead of text")
	flag.Parse()
	var h slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	if *logJSON {
		h = slog.NewJSONHandler(os.Stderr, nil)
	}
	log := slog.New(h).With("pid", os.Getpid())
	if err := run(*addr, *path, *watch, *canary, *pidFile, log); err != nil {
		log.Error("pluginhost: exiting", "error", err)
		os.Exit(1)
	}
}

// run serves until a successor generation has taken over or a stop signal
// has drained the server, then closes the plugin manager: Close ends Watch
// and kills the plugin process once its calls are over.
func run(addr, path string, watch bool, canary float64, pidFile string, log *slog.Logger) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	m, h, err := newHost(ctx, path, canary, log, nil)
	cancel()
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, m.Close()) }()
	if watch {
		go func() {
			if err := m.Watch(context.Background()); !errors.Is(err, plugin.ErrClosed) {
				log.Error("pluginhost: not watching the plugin", "error", err)
			}
		}()
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return handoff.ListenAndServe(srv, handoff.Options{PIDFile: pidFile, Reload: m.Reload, Logger: log})
}

// newHost starts the plugin manager and returns the HTTP handler:
//
//	GET /?name=Ann     the plugin's greeting (headers X-Plugin-Version, X-Host-Pid)
//	GET /versions      the plugin versions this process loaded, as JSON
//
// The name is the canary key, so one name stays on one version.
func newHost(ctx context.Context, path string, canary float64, log *slog.Logger, onEvent func(plugin.Event)) (*plugin.Manager[greeter.Greeter], http.Handler, error) {
	m, err := plugin.New(ctx, plugin.Options[greeter.Greeter]{
		Handshake: greeter.Handshake,
		Plugins:   greeter.Plugins(nil),
		Path:      path,
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
		w.Header().Set("X-Host-Pid", strconv.Itoa(os.Getpid()))
		fmt.Fprintln(w, msg)
	})
	mux.HandleFunc("GET /versions", func(w http.ResponseWriter, r *http.Request) {
		var out []versionView
		for _, v := range m.Versions() {
			out = append(out, viewOf(v))
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	})
	return m, mux, nil
}

// versionView is a plugin.Version as /versions shows it: durations as
// "1.5ms", times in RFC 3339, the error as its text.
type versionView struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	SHA256    string `json:"sha256,omitempty"`
	Source    string `json:"source"`
	Staged    string `json:"staged,omitempty"`
	PluginPID int    `json:"plugin_pid,omitempty"`
	Restarts  int    `json:"restarts,omitempty"`
	Loaded    string `json:"loaded"`
	Serving   string `json:"serving,omitempty"`
	Retired   string `json:"retired,omitempty"`
	Stage     string `json:"stage"`           // copy and checksum
	Start     string `json:"start,omitempty"` // exec to serving (or to the refusal)
	Error     string `json:"error,omitempty"`
}

func viewOf(v plugin.Version) versionView {
	at := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Format(time.RFC3339Nano)
	}
	view := versionView{
		ID: v.ID, State: string(v.State), SHA256: v.SHA256, Source: v.Source, Staged: v.Staged,
		PluginPID: v.PID, Restarts: v.Restarts,
		Loaded: at(v.Loaded), Serving: at(v.Serving), Retired: at(v.Retired),
		Stage: v.Stage.Round(time.Microsecond).String(),
	}
	if v.Start != 0 {
		view.Start = v.Start.Round(time.Microsecond).String()
	}
	if v.Err != nil {
		view.Error = v.Err.Error()
	}
	return view
}
