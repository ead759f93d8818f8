// Package control is the wire format and transport of the control channel
// between two generations of a process during an upgrade.
//
// The old generation listens on a unix socket whose address is derived from
// its own pid (an abstract socket on Linux, a file in the temporary directory
// elsewhere); the new generation, a direct child, dials the address derived
// from its parent pid. Both ends check the peer's credentials where the OS
// provides them: the dialer must be a child of the listener, the listener must
// be the dialer's parent, and both must run as the same user.
//
// Messages are JSON objects, one per line, each carrying the protocol version.
// A peer that sees a version it does not speak fails the hand-shake with
// ErrVersion, so that a new binary with another protocol is refused cleanly
// and the old generation keeps serving.
package control
