//go:build linux

package fdpass

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns two connected ends of a unixpacket socket.
func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	end := func(fd int) *Conn {
		f := os.NewFile(uintptr(fd), "seqpacket")
		defer f.Close()
		c, err := net.FileConn(f)
		require.NoError(t, err)
		return New(c.(*net.UnixConn))
	}
	a, b := end(fds[0]), end(fds[1])
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	server, err = ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// A connection's socket sent and the sender's descriptors closed: the
// receiver serves the connection, and the client saw no end of it.
func TestSendConnection(t *testing.T) {
	a, b := pair(t)
	client, server := tcpPair(t)
	fd, err := Dup(server.(*net.TCPConn))
	require.NoError(t, err)
	require.NoError(t, a.Send([]byte("tcp 127.0.0.1:1"), []int{fd}))
	require.NoError(t, Close(fd))
	require.NoError(t, server.Close()) // no FIN: the receiver holds the socket

	header, fds, err := b.Receive()
	require.NoError(t, err)
	assert.Equal(t, "tcp 127.0.0.1:1", string(header))
	require.Len(t, fds, 1)
	f := os.NewFile(uintptr(fds[0]), "received")
	moved, err := net.FileConn(f)
	require.NoError(t, err)
	f.Close()
	defer moved.Close()

	_, err = client.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	require.NoError(t, moved.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.ReadFull(moved, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))
	_, err = moved.Write([]byte("pong"))
	require.NoError(t, err)
	require.NoError(t, client.SetReadDeadline(time.Now().Add(10*time.Second)))
	_, err = io.ReadFull(client, buf)
	require.NoError(t, err)
	assert.Equal(t, "pong", string(buf))
}

// MaxFDs descriptors go in one message and arrive in order.
func TestSendMany(t *testing.T) {
	a, b := pair(t)
	var fds []int
	for range MaxFDs {
		r, w, err := os.Pipe()
		require.NoError(t, err)
		w.Close()
		fd, err := unix.Dup(int(r.Fd()))
		require.NoError(t, err)
		r.Close()
		fds = append(fds, fd)
	}
	defer closeAll(fds)
	require.NoError(t, a.Send([]byte("x"), fds))
	_, got, err := b.Receive()
	require.NoError(t, err)
	assert.Len(t, got, MaxFDs)
	closeAll(got)
}

func TestSendBounds(t *testing.T) {
	a, _ := pair(t)
	assert.Error(t, a.Send([]byte("x"), nil))
	assert.Error(t, a.Send([]byte("x"), make([]int, MaxFDs+1)))
	assert.Error(t, a.Send(nil, []int{0}))
	assert.Error(t, a.Send(make([]byte, MaxHeader+1), []int{0}))
}

func TestReceiveEOF(t *testing.T) {
	a, b := pair(t)
	require.NoError(t, a.Close())
	_, _, err := b.Receive()
	assert.ErrorIs(t, err, io.EOF)
}

// A header longer than MaxHeader is refused and its descriptors closed.
func TestReceiveTruncated(t *testing.T) {
	a, b := pair(t)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	// Send by hand: Send itself refuses the long header.
	raw, err := a.c.SyscallConn()
	require.NoError(t, err)
	var serr error
	require.NoError(t, raw.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), make([]byte, MaxHeader+10), unix.UnixRights(int(w.Fd())), nil, 0)
		return true
	}))
	require.NoError(t, serr)
	_, fds, err := b.Receive()
	assert.True(t, errors.Is(err, ErrTruncated), "err = %v", err)
	assert.Empty(t, fds)
}

// Dup leaves the connection as it was: it still reads what arrives.
func TestDupLeavesConn(t *testing.T) {
	client, server := tcpPair(t)
	fd, err := Dup(server.(*net.TCPConn))
	require.NoError(t, err)
	require.NoError(t, Close(fd))
	_, err = client.Write([]byte("a"))
	require.NoError(t, err)
	require.NoError(t, server.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 1)
	_, err = io.ReadFull(server, buf)
	require.NoError(t, err)
}
