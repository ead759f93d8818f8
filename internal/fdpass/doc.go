// Package fdpass passes open sockets between two processes: file
// descriptors in SCM_RIGHTS control messages over a unix socket of type
// SOCK_SEQPACKET ("unixpacket"), which keeps message boundaries, so that one
// message is one small header (which names what the sockets are for) and
// up to MaxFDs descriptors, sent and received whole or not at all.
//
// The sender keeps its own descriptors: the kernel installs new ones, for
// the same open sockets, in the receiver. A socket whose last descriptor
// closes is shut down; one that is still open in the other process is not,
// so a sender may close its copy as soon as Send returned without the peer
// of the socket seeing anything.
//
// It also has Dup, which makes a descriptor of a connection's socket for
// Send without disturbing the connection. On platforms without unix
// sockets every function returns ErrNotSupported.
package fdpass
