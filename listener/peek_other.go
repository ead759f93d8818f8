//go:build !unix

package listener

import "net"

// pendingInput cannot peek at the socket on this platform: the idle closer
// relies on the conn's Read alone.
func pendingInput(net.Conn) bool { return false }
