//go:build unix

// Command bundle serves a static front end from a directory, a .zip or a
// .tar.gz and swaps it, with no restart, when the file changes or on
// SIGUSR2. See README.md for the deploy step.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	ossignal "os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/handoff-go/handoff/bundle"
	"github.com/handoff-go/handoff/reload"
)

func main() {
	ctx, stop := ossignal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "bundle:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done. ready, when set, is called with the
// listening address once the first bundle is loaded and SIGUSR2 is handled.
func run(ctx context.Context, args []string, stderr io.Writer, ready func(addr string)) error {
	fl := flag.NewFlagSet("bundle", flag.ContinueOnError)
	fl.SetOutput(stderr)
	addr := fl.String("addr", "127.0.0.1:8080", "listen address")
	path := fl.String("bundle", "site", "bundle to serve: a directory, a .zip or a .tar.gz")
	fallback := fl.String("fallback", "index.html", "document served for client-side routes (empty: none)")
	grace := fl.Duration("grace", bundle.DefaultGrace, "how long assets of replaced bundles stay servable")
	debounce := fl.Duration("debounce", reload.DefaultDebounce, "quiet period before a changed bundle is loaded")
	if err := fl.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	h := bundle.New(*path, bundle.Options{Fallback: *fallback, Grace: *grace, Debounce: *debounce, Logger: log})
	defer h.Close()
	if err := h.Reload(ctx); err != nil {
		return err // no bundle, no service
	}

	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("GET /-/bundle", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(h.Value().History())
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	usr2 := make(chan os.Signal, 1)
	ossignal.Notify(usr2, syscall.SIGUSR2)
	defer ossignal.Stop(usr2)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { _ = h.Watch(ctx) })
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-usr2:
				log.Info("SIGUSR2: reloading", "bundle", *path)
				_ = h.Reload(ctx) // failures are logged by the Value
			}
		}
	})
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- srv.Serve(ln) })
	log.Info("serving", "addr", ln.Addr().String(), "bundle", *path, "version", h.Value().Current().ID)
	if ready != nil {
		ready(ln.Addr().String())
	}

	var err2 error
	select {
	case <-ctx.Done():
	case err2 = <-serveErr:
	}
	cancel()
	shutdownCtx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		err2 = errors.Join(err2, err)
	}
	wg.Wait()
	if errors.Is(err2, http.ErrServerClosed) {
		err2 = nil
	}
	return err2
}
