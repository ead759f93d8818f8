//go:build unix

package upgradertest

import (
	"context"

	"github.com/handoff-go/handoff/upgrader"
)

// generation is the generation of the Upgrader in ctx, 0 if there is none.
func generation(ctx context.Context) int {
	if u, ok := upgrader.FromContext(ctx); ok && u != nil {
		return u.Generation()
	}
	return 0
}
