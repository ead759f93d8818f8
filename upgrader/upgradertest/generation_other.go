//go:build !unix

package upgradertest

import "context"

// generation is 0: package upgrader does not build here (its control
// channel between generations is a unix socket, and upgrades are not
// supported on Windows), so no request can carry an Upgrader.
func generation(context.Context) int { return 0 }
