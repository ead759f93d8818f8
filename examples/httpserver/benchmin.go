//go:build benchmin

package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/handoff-go/handoff"
	"github.com/handoff-go/handoff/signal"
	"github.com/handoff-go/handoff/upgrader"
)

// Built with -tags benchmin, as the benchmark builds it, the server has no
// gRPC and no admin page, so that it links what its baselines link (net/http
// and the upgrade library): the admin page brings client_golang, go-plugin
// and gRPC, whose package initialisation alone costs a new generation about
// 2.5 ms of its start, which the benchmark would charge to the upgrade.
var errBenchmin = errors.New("built with -tags benchmin")

func grpcServer(string) (handoff.Server, error) { return handoff.Server{}, errBenchmin }

// observability is empty: -admin-addr is refused.
type observability struct{ admin *http.Server }

func newObservability(c config, _ *slog.Logger) (*observability, error) {
	if c.adminAddr != "" {
		return nil, errBenchmin
	}
	return &observability{}, nil
}

func (*observability) wrap(h http.Handler) http.Handler      { return h }
func (*observability) attach(*upgrader.Upgrader) error       { return nil }
func (*observability) onEvent(upgrader.Event)                {}
func (*observability) onSignal(signal.Event)                 {}
func (*observability) reloader() func(context.Context) error { return nil }
func (*observability) close()                                {}
