// Command flags serves an answer that depends on two feature flags, with
// every guarantee of handoff.Run, and changes the flags with no restart:
//
//   - new-checkout, rolled out by percentage: a user either has the new
//     checkout or the classic one;
//   - button-color, an A/B test: the new checkout's button is blue or
//     green.
//
// Their values come from a file (-flags, JSON or YAML):
//
//   - a change of the file (an editor's save, a rename, a ConfigMap
//     swap) is served within a few tens of milliseconds: flags.Set.Watch;
//   - SIGUSR2 loads it again now: handoff.Options.Reload;
//   - a file with a mistake is refused whole, logged with the file, the
//     flag and the problem, and the current values keep serving;
//   - SIGHUP upgrades the binary, SIGTERM drains and exits.
//
// See README.md.
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
	"sync"
	"time"

	"github.com/handoff-go/handoff"
	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/flags/flagsyaml"
)

// registry holds the program's flags: each with its owner and the date by
// which it should be gone (go vet -vettool=$(which handoff-flagcheck)
// reports it after that).
var registry flags.Registry

var (
	newCheckout = registry.Bool(flags.Def{
		Name:        "new-checkout",
		Description: "the one-page checkout instead of the classic three steps",
		Owner:       "team-payments",
		RemoveBy:    "2027-06-30",
	}, false)
	buttonColor = registry.String(flags.Def{
		Name:        "button-color",
		Description: "the colour of the new checkout's buy button (A/B test)",
		Owner:       "team-growth",
		RemoveBy:    "2027-03-31",
	}, "blue",
		flags.Variant[string]{Name: "blue", Value: "#1f6feb"},
		flags.Variant[string]{Name: "green", Value: "#2da44e"})
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to serve on")
	path := flag.String("flags", "flags.json", "the values file (.json, .yaml or .yml)")
	pidFile := flag.String("pidfile", "", "PID file naming the generation in charge")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pid", os.Getpid())

	set := flags.New(&registry, *path, flags.Options{
		YAML:   flagsyaml.ToJSON,
		Logger: log,
		// The A/B test's exposures, for the analysis: here a log record
		// for 1 % of the users (always the same ones).
		OnExposure: func(e flags.Exposure) {
			if e.Flag == buttonColor.Name() {
				log.Debug("flags: exposure", "flag", e.Flag, "variant", e.Variant, "key", e.Key, "seq", e.Seq)
			}
		},
		ExposureRate: 0.01,
	})
	err := serve(set, *addr, *pidFile, log)
	if cerr := set.Close(); cerr != nil {
		log.Warn("flags: close", "error", cerr)
	}
	if err != nil {
		log.Error("flags: exiting", "error", err)
		os.Exit(1)
	}
}

// serve loads the values, watches them and serves until handoff.Run
// returns: after SIGTERM, or once a new generation has taken over.
func serve(set *flags.Set, addr, pidFile string, log *slog.Logger) error {
	if err := set.Reload(context.Background()); err != nil {
		return err // a values file with a mistake: fix it before starting
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		if err := set.Watch(ctx); !errors.Is(err, context.Canceled) {
			log.Error("flags: not watching", "error", err)
		}
	})

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		snap, _ := flags.FromContext(r.Context()) // one values version for the whole request
		user := r.URL.Query().Get("user")
		if user == "" {
			http.Error(w, "who are you? ?user=ID", http.StatusBadRequest)
			return
		}
		if !newCheckout.Enabled(snap, user) {
			fmt.Fprintf(w, "%s: classic checkout (values %d)\n", user, snap.Seq())
			return
		}
		color, hex := buttonColor.Variant(snap, user)
		fmt.Fprintf(w, "%s: new checkout, %s button %s (values %d)\n", user, color, hex, snap.Seq())
	})
	mux.HandleFunc("GET /-/flags", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"flags": registry.Flags(), "versions": set.Value().History()})
	})
	srv := &http.Server{Addr: addr, Handler: set.Handler(mux), ReadHeaderTimeout: 10 * time.Second}
	return handoff.ListenAndServe(srv, handoff.Options{PIDFile: pidFile, Reload: set.Reload, Logger: log})
}
