// Command bundle serves a static front end (a directory, a .zip or a
// .tar.gz) with every guarantee of handoff.Run, and swaps the front end for
// a new version with no restart:
//
//   - a change of the bundle on disk (an archive renamed into place, a
//     symlink swapped) swaps it: bundle.Handler.Watch;
//   - SIGUSR2 loads it again now: handoff.Options.Reload;
//   - SIGHUP upgrades the binary: a new process takes the socket over and
//     loads the bundle itself, the old one drains and exits;
//   - SIGTERM or SIGINT drains and exits.
//
// Requests in flight keep the bundle they started with, and pages loaded
// before a swap still get their hashed assets for -grace. See README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/handoff-go/handoff"
	"github.com/handoff-go/handoff/bundle"
	"github.com/handoff-go/handoff/reload"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to serve on")
	path := flag.String("bundle", "site", "the bundle to serve: a directory, a .zip or a .tar.gz")
	fallback := flag.String("fallback", "index.html", "document served for client-side routes (empty: none)")
	grace := flag.Duration("grace", bundle.DefaultGrace, "how long the assets of a replaced bundle stay servable")
	debounce := flag.Duration("debounce", reload.DefaultDebounce, "quiet period before a changed bundle is loaded")
	pidFile := flag.String("pidfile", "", "PID file naming the generation in charge")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pid", os.Getpid())

	site := bundle.New(*path, bundle.Options{Fallback: *fallback, Grace: *grace, Debounce: *debounce, Logger: log})
	err := serve(site, *addr, *pidFile, log)
	if cerr := site.Close(); cerr != nil {
		log.Warn("bundle: close", "error", cerr)
	}
	if err != nil {
		log.Error("bundle: exiting", "error", err)
		os.Exit(1)
	}
}

// serve loads the bundle, watches it and serves it until handoff.Run
// returns: after SIGTERM, or once a new generation has taken over.
func serve(site *bundle.Handler, addr, pidFile string, log *slog.Logger) error {
	if err := site.Reload(context.Background()); err != nil {
		return err // no bundle, no service
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		if err := site.Watch(ctx); !errors.Is(err, context.Canceled) {
			log.Error("bundle: not watching", "error", err)
		}
	})

	mux := http.NewServeMux()
	mux.Handle("/", site)
	mux.HandleFunc("GET /-/bundle", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(site.Value().History())
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return handoff.ListenAndServe(srv, handoff.Options{PIDFile: pidFile, Reload: site.Reload, Logger: log})
}
