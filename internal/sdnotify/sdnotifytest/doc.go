// Package sdnotifytest is a stand-in for the service manager's end of
// NOTIFY_SOCKET, for tests: a unixgram socket that records every datagram
// with the sender's credentials (SCM_CREDENTIALS) and closes the file
// descriptors that come with it, as systemd does for BARRIER=1.
//
// Linux only (credentials passing).
package sdnotifytest
