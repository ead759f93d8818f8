//go:build !unix

package fdpass

import (
	"net"
	"syscall"
	"time"
)

// Conn is one end of a channel that carries descriptors; on this platform
// there is none.
type Conn struct{}

// New returns a Conn that cannot send or receive.
func New(c *net.UnixConn) *Conn { return &Conn{} }

// Send returns ErrNotSupported.
func (c *Conn) Send(header []byte, fds []int) error { return ErrNotSupported }

// Receive returns ErrNotSupported.
func (c *Conn) Receive() ([]byte, []int, error) { return nil, nil, ErrNotSupported }

// SetSendTimeout does nothing.
func (c *Conn) SetSendTimeout(d time.Duration) {}

// Close does nothing.
func (c *Conn) Close() error { return nil }

// Dup returns ErrNotSupported.
func Dup(c syscall.Conn) (int, error) { return -1, ErrNotSupported }

// Close returns ErrNotSupported.
func Close(fd int) error { return ErrNotSupported }
