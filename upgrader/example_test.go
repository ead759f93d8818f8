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

// A server composed by hand from the low-level packages, upgrading itself on
// SIGHUP and draining on SIGTERM: what handoff.Run does for you. This is a
// process-level flow, so the example is compiled but not run; see
// examples/httpserver for a complete program on handoff.Run.
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
	defer upg.Close() // after the drain: waits until nothing an upgrade started runs

	ln, err := upg.Listen("tcp", ":8080") // inherited on an upgrade, new on a first start
	if err != nil {
		slog.Error("listen", "error", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: http.NotFoundHandler()}
	listener.ConfigureServer(srv) // Connection: close while draining, connection counts
	go srv.Serve(ln)

	// Handle the signals before Ready: once this process accepts, a SIGHUP
	// or SIGTERM must not find the default disposition (exit). Start
	// returns once they are subscribed.
	drained := make(chan struct{})
	sigCtx, stopSignals := context.WithCancel(context.Background())
	waitSignals, err := signal.Start(sigCtx, signal.Actions{
		Upgrade: upg.Upgrade, // SIGHUP
		Stop: func(ctx context.Context, cause error) error { // SIGTERM, SIGINT
			upg.Stop()
			select { // a graceful stop returns once drained
			case <-drained:
				return nil
			case <-ctx.Done(): // a second SIGTERM
				return context.Cause(ctx)
			}
		},
	}, signal.Options{})
	if err != nil {
		slog.Error("signals", "error", err)
		os.Exit(1)
	}

	// Health check, start accepting, probation; nil once in charge.
	if err := upg.Ready(context.Background()); err != nil {
		slog.Error("not ready", "error", err) // a rolled-back new generation ends here: Exit is closed
	}
	for {
		<-upg.Exit() // a successor committed, or Stop

		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := upg.Drain(ctx) // stop accepting, Connection: close, wait for in-flight work
		if errors.Is(err, upgrader.ErrReclaimed) {
			// The successor died while this generation drained: it
			// serves again. Wait for Exit again.
			cancel()
			continue
		}
		srv.Shutdown(ctx) // only HTTP/2 connections are left: they get a GOAWAY
		cancel()
		break
	}
	close(drained)
	stopSignals()
	_ = waitSignals()
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
		// The new generation is in charge (or, for a request made while an
		// upgrade committed, will carry it out): drain and exit.
	case errors.Is(err, upgrader.ErrStopped), errors.Is(err, upgrader.ErrUpgraded):
		// This generation stops, or can no longer start another one.
	case errors.As(err, &ue) && errors.Is(err, upgrader.ErrExited):
		slog.Error("new binary exited", "status", ue.Status, "phase", ue.Phase)
	case errors.As(err, &ue) && ue.Phase == upgrader.PhaseProbation:
		slog.Error("new binary failed its probation", "error", err)
	case errors.Is(err, upgrader.ErrUnhealthy), errors.Is(err, upgrader.ErrTimeout):
		slog.Error("new binary rolled back", "error", err)
	}
}
