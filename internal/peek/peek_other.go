//go:build !unix

package peek

import "net"

// Pending cannot peek at the socket on this platform: the idle closer
// relies on the conn's Read alone.
func Pending(net.Conn) bool { return false }
