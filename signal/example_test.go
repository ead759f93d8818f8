package signal_test

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/handoff-go/handoff/signal"
)

// A server wires its upgrade and its drain to signals and lets Run block
// until the drain is done. (Compile-only: it waits for real signals.)
func ExampleRun() {
	// upgrade would hand the sockets to a new generation (package upgrader)
	// and drain would stop accepting and finish in-flight work (package
	// listener).
	upgrade := func(ctx context.Context) error { return nil }
	drain := func(ctx context.Context) error { return nil }

	err := signal.Run(context.Background(), signal.Actions{
		// ctx is cancelled with cause if a stop arrives during the upgrade.
		Upgrade: upgrade,
		Stop: func(ctx context.Context, cause error) error {
			slog.Info("draining", "cause", cause)
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			return drain(ctx)
		},
		// Kill is nil: a second SIGTERM or a SIGQUIT exits at once with
		// status signal.DefaultKillExitCode.
	}, signal.Options{})
	if err != nil {
		slog.Error("stopped", "error", err)
		os.Exit(1)
	}
}

// A server subscribes to its signals before it accepts, then serves while
// Start dispatches them; wait returns once the drain is done. (Compile-only:
// it waits for real signals.)
func ExampleStart() {
	drain := func(ctx context.Context) error { return nil }
	serve := func() {} // start accepting, on goroutines of its own

	wait, err := signal.Start(context.Background(), signal.Actions{
		Stop: func(ctx context.Context, cause error) error { return drain(ctx) },
	}, signal.Options{})
	if err != nil {
		slog.Error("signals", "error", err) // two lists share a signal
		os.Exit(1)
	}
	// From here a SIGTERM is a graceful stop, never the default exit.
	serve()
	if err := wait(); err != nil {
		slog.Error("stopped", "error", err)
		os.Exit(1)
	}
}
