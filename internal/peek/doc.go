// Package peek tells whether bytes from the peer are waiting, unread, in a
// socket's receive buffer, without consuming them or blocking: the start of
// a request that a server has not read yet. The listener's idle closer uses
// it so as not to close a keep-alive connection under an arriving request.
package peek
