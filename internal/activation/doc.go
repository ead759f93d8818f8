// Package activation adopts the sockets a service manager passed to the
// process (socket activation: LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES) and
// matches them to the addresses or names a program asks for.
//
// Sockets reads the variables once, through
// github.com/coreos/go-systemd/v22/activation, marks the descriptors
// close-on-exec and unsets the variables, so that no process started later
// (a new generation of a binary upgrade) reads them again: the process that
// adopted the sockets hands them on by its own means. Stream sockets become
// net.Listeners, datagram sockets net.PacketConns.
//
// A socket matches a request by address (Socket.Matches: the same port and
// IP, an empty or unspecified host matching an unspecified address; the same
// path for unix sockets) or by name (the .socket unit's FileDescriptorName=,
// "LISTEN_FD_<n>" for an unnamed one).
//
// On systems without socket activation Sockets returns nothing.
package activation
