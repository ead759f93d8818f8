package upgrader_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/handoff-go/handoff/listener"
	"github.com/handoff-go/handoff/signal"
	"github.com/handoff-go/handoff/upgrader"
)

// A server that upgrades itself on SIGHUP and drains on SIGTERM. This is a
// process-level flow, so the example is compiled but not run; see
// examples/httpserver for the complete program.
func Example() {
	upg, err := upgrader.New(upgrader.Options{
		PIDFile:   "/run/app/app.pid",
		Probation: 2 * time.Second,
		HealthCheck: func(ctx context.Context) error {
			return nil // check the database, caches, config...
		},
		Logger: slog.Default(),
	})
	if err != nil {
		slog.Error("upgrader", "error", err)
		os.Exit(1)
	}
	defer upg.Close()

	ln, err := upg.Listen("tcp", ":8080") // inherited on an upgrade, new on a first start
	if err != nil {
		slog.Error("listen", "error", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: http.NotFoundHandler()}
	listener.ConfigureServer(srv) // Connection: close while draining, connection counts
	go srv.Serve(ln)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go signal.Run(ctx, signal.Actions{
		Upgrade: upg.Upgrade, // SIGHUP
		Stop: func(ctx context.Context, cause error) error { // SIGTERM, SIGINT
			upg.Stop()
			return nil
		},
	}, signal.Options{})

	// Health check, start accepting, probation; commits when it returns nil.
	if err := upg.Ready(ctx); err != nil {
		slog.Error("not ready", "error", err) // a rolled-back new generation ends here
	}
	<-upg.Exit() // a successor committed, or Stop

	ctx, cancelDrain := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelDrain()
	upg.Drain(ctx)    // pause, Connection: close, wait for in-flight work
	srv.Shutdown(ctx) // nothing is left to shut down
}

// Upgrade returns why an upgrade did not commit; the process keeps serving.
func ExampleUpgrader_Upgrade() {
	var upg *upgrader.Upgrader // from upgrader.New, after Ready
	if upg == nil {
		return
	}
	err := upg.Upgrade(context.Background())
	var ue *upgrader.UpgradeError
	switch {
	case err == nil:
		// The new generation is in charge: drain and exit.
	case errors.Is(err, upgrader.ErrInProgress):
		// Another upgrade runs.
	case errors.As(err, &ue) && errors.Is(err, upgrader.ErrExited):
		slog.Error("new binary exited", "status", ue.Status, "phase", ue.Phase)
	case errors.Is(err, upgrader.ErrUnhealthy), errors.Is(err, upgrader.ErrTimeout):
		slog.Error("new binary rolled back", "error", err)
	}
}
