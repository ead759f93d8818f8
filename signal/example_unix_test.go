//go:build unix

package signal_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"github.com/handoff-go/handoff/signal"
)

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
