//go:build unix

package fdpass

import (
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Conn is one end of a channel that carries descriptors. Send and Receive
// may be called concurrently with each other and with Close; concurrent
// Sends are serialised.
type Conn struct {
	c       *net.UnixConn
	mu      sync.Mutex    // serialises Send
	timeout time.Duration // of each Send; 0: none
	rbuf    []byte        // Receive's buffers: one Receive at a time
	oob     []byte
	once    sync.Once
}

// New returns a Conn on c, which should be of type "unixpacket" (a
// "unix" stream would merge or split headers).
func New(c *net.UnixConn) *Conn { return &Conn{c: c} }

// Send sends header and fds in one message. It returns nil once the
// message is in the receiver's queue: the receiver then holds the sockets
// whatever happens to this process. On an error nothing was sent. fds must
// number between 1 and MaxFDs; they stay open in this process.
func (c *Conn) Send(header []byte, fds []int) error {
	if len(fds) == 0 || len(fds) > MaxFDs {
		return fmt.Errorf("fdpass: send %d descriptors: want 1 to %d", len(fds), MaxFDs)
	}
	if len(header) == 0 || len(header) > MaxHeader {
		return fmt.Errorf("fdpass: header of %d bytes: want 1 to %d", len(header), MaxHeader)
	}
	oob := unix.UnixRights(fds...)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timeout > 0 {
		_ = c.c.SetWriteDeadline(time.Now().Add(c.timeout))
	}
	n, oobn, err := c.c.WriteMsgUnix(header, oob, nil)
	if err != nil {
		return fmt.Errorf("fdpass: send: %w", err)
	}
	if n != len(header) || oobn != len(oob) {
		// A SOCK_SEQPACKET message is sent whole or not at all; a stream
		// socket could do this.
		return fmt.Errorf("fdpass: send: short write (%d of %d bytes, %d of %d control bytes)", n, len(header), oobn, len(oob))
	}
	return nil
}

// Receive waits for the next message and returns its header and
// descriptors, which the caller owns (they are close-on-exec). It returns
// an error wrapping io.EOF once the peer closed the channel, and one
// wrapping ErrTruncated for a message that did not fit (whatever arrived
// of it is closed). Call it from one goroutine at a time.
func (c *Conn) Receive() ([]byte, []int, error) {
	if c.rbuf == nil {
		c.rbuf = make([]byte, MaxHeader+1)
		c.oob = make([]byte, unix.CmsgSpace(4*MaxFDs))
	}
	n, oobn, flags, _, err := c.c.ReadMsgUnix(c.rbuf, c.oob)
	if err != nil {
		return nil, nil, fmt.Errorf("fdpass: receive: %w", err)
	}
	fds, perr := parseRights(c.oob[:oobn])
	switch {
	case perr != nil:
		closeAll(fds)
		return nil, nil, fmt.Errorf("fdpass: receive: %w", perr)
	case flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || n > MaxHeader:
		closeAll(fds)
		return nil, nil, fmt.Errorf("%w (flags %#x, %d header bytes)", ErrTruncated, flags, n)
	case n == 0 && oobn == 0:
		// A zero-length read with nothing attached: the peer is gone.
		return nil, nil, fmt.Errorf("fdpass: receive: %w", io.EOF)
	}
	return append([]byte(nil), c.rbuf[:n]...), fds, nil
}

// parseRights returns every descriptor in the control messages of oob.
func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			closeAll(fds)
			return nil, err
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}

// SetSendTimeout bounds each later Send: one that cannot queue its message
// within d (the receiver does not read) fails, having sent nothing.
func (c *Conn) SetSendTimeout(d time.Duration) {
	c.mu.Lock()
	c.timeout = d
	c.mu.Unlock()
}

// Close closes the channel; a Receive in progress returns. It is
// idempotent.
func (c *Conn) Close() error {
	var err error
	c.once.Do(func() { err = c.c.Close() })
	return err
}

// Dup returns a new descriptor (close-on-exec) for the socket under c,
// for Send. It does not disturb c: no read, no change of mode; the caller
// closes the descriptor with Close.
func Dup(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("fdpass: dup: %w", err)
	}
	nfd, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, fmt.Errorf("fdpass: dup: %w", err)
	}
	if derr != nil {
		return -1, fmt.Errorf("fdpass: dup: %w", derr)
	}
	return nfd, nil
}

// Close closes a descriptor that Dup or Receive returned.
func Close(fd int) error { return unix.Close(fd) }
