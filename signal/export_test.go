package signal

import (
	"context"
	"os"
)

// RunFromChannel is Run fed from c instead of os/signal, so tests can
// control exactly which signals the dispatcher sees and when. a.Kill must
// not be nil.
func RunFromChannel(ctx context.Context, a Actions, opts Options, c <-chan os.Signal) error {
	o := opts.withDefaults()
	table, err := o.table(a)
	if err != nil {
		return err
	}
	if a.Kill == nil {
		panic("signal: RunFromChannel needs a Kill")
	}
	return run(ctx, a, o, table, c)
}
