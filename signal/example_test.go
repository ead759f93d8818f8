//go:build unix

package signal_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
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
		slog.Error("stopped", "err", err)
		os.Exit(1)
	}
}

// Upgrade signals never overlap: this one, sent to the process itself once
// Run is ready, runs the upgrade, which then ends Run through its context.
func Example_upgrade() {
	ctx, cancel := context.WithCancelCause(context.Background())
	done := errors.New("demo over")
	err := signal.Run(ctx, signal.Actions{
		Upgrade: func(context.Context) error {
			fmt.Println("upgrading")
			cancel(done)
			return nil
		},
	}, signal.Options{
		Logger: slog.New(slog.DiscardHandler),
		OnEvent: func(e signal.Event) {
			fmt.Println("event:", e.Kind, e.Action)
			if e.Kind == signal.EventReady {
				_ = syscall.Kill(os.Getpid(), syscall.SIGHUP)
			}
		},
	})
	fmt.Println("run returned:", err, "/", context.Cause(ctx))
	// Output:
	// event: ready none
	// event: received upgrade
	// event: started upgrade
	// upgrading
	// event: finished upgrade
	// run returned: context canceled / demo over
}
