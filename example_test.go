package handoff_test

import (
	"context"
	"log"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc"

	"github.com/handoff-go/handoff"
	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// The quick start (examples/quickstart): an HTTP server that upgrades
// itself on SIGHUP, drains on SIGTERM and loses no request. A process-level
// flow: compiled, not run.
func ExampleListenAndServe() {
	srv := &http.Server{Addr: "127.0.0.1:8080", Handler: upgradertest.Handler()}
	if err := handoff.ListenAndServe(srv, handoff.Options{PIDFile: "/run/app/app.pid", Logger: slog.Default()}); err != nil {
		log.Fatal(err)
	}
}

// Several servers in one process: HTTP on TCP and a unix socket, gRPC on
// its own port, with a probation window, a health check and a hot-swap
// action for SIGUSR2. Compiled, not run.
func ExampleRun() {
	srv := &http.Server{Handler: http.NotFoundHandler()}
	gs := grpc.NewServer()
	err := handoff.Run(context.Background(), handoff.Options{
		PIDFile:   "/run/app/app.pid",
		Probation: 2 * time.Second,
		HealthCheck: func(ctx context.Context) error {
			return nil // the database, caches, configuration...
		},
		Reload: func(ctx context.Context) error {
			return nil // swap bundles, flags, plugins
		},
		Logger: slog.Default(),
	},
		handoff.HTTP(srv, ":8080", "unix:/run/app/http.sock"),
		handoff.GRPC(gs, ":9090"),
	)
	if err != nil {
		log.Fatal(err)
	}
}
