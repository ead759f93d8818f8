//go:build linux

package proc

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSockets: a listener and a connection of this process are in the
// kernel's tables under the inodes of its fds, in the right states.
func TestSockets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()

	inodes, err := SocketInodes(os.Getpid())
	require.NoError(t, err)
	socks, err := TCPSockets(1<<TCPListen | 1<<TCPEstablished)
	require.NoError(t, err)
	lnAddr := netip.MustParseAddrPort(ln.Addr().String())
	clientAddr := netip.MustParseAddrPort(c.LocalAddr().String())
	var listening, accepted bool
	for _, so := range socks {
		switch {
		case so.Local == lnAddr && so.State == TCPListen:
			listening = inodes[so.Inode]
		case so.Local == lnAddr && so.Remote == clientAddr:
			accepted = inodes[so.Inode] && so.State == TCPEstablished
		}
	}
	assert.True(t, listening, "the listener")
	assert.True(t, accepted, "the accepted connection, established")

	// The exact lookup finds the accepted end, and nothing for a pair
	// that is not connected.
	so, ok, err := TCPLookup(lnAddr, clientAddr)
	require.NoError(t, err)
	require.True(t, ok)
	assert.True(t, inodes[so.Inode])
	assert.Equal(t, TCPEstablished, so.State)
	assert.Equal(t, clientAddr, so.Remote)
	_, ok, err = TCPLookup(lnAddr, netip.AddrPortFrom(clientAddr.Addr(), clientAddr.Port()+1))
	require.NoError(t, err)
	assert.False(t, ok)

	// The mask filters: no listener among the established sockets, and
	// IPv6 sockets are read too.
	ln6, err := net.Listen("tcp6", "[::1]:0")
	if err == nil { // a machine without IPv6 loopback skips this
		defer ln6.Close()
	}
	socks, err = TCPSockets(1 << TCPEstablished)
	require.NoError(t, err)
	for _, so := range socks {
		assert.Equal(t, TCPEstablished, so.State, "%v", so)
	}
	if ln6 != nil {
		socks, err = TCPSockets(1 << TCPListen)
		require.NoError(t, err)
		var found bool
		for _, so := range socks {
			found = found || so.Local.String() == ln6.Addr().String()
		}
		assert.True(t, found, "the IPv6 listener %s", ln6.Addr())
	}

	// A dual-stack listener's connection from 127.0.0.1 is an IPv6 socket
	// with IPv4-mapped addresses: found from the IPv4 pair.
	if ds, err := net.Listen("tcp", "[::]:0"); err == nil {
		defer ds.Close()
		port := netip.MustParseAddrPort(ds.Addr().String()).Port()
		c2, err := net.Dial("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
		require.NoError(t, err)
		defer c2.Close()
		s2, err := ds.Accept()
		require.NoError(t, err)
		defer s2.Close()
		so, ok, err := TCPLookup(netip.MustParseAddrPort(s2.LocalAddr().String()), netip.MustParseAddrPort(c2.LocalAddr().String()))
		require.NoError(t, err)
		require.True(t, ok, "dual-stack %v %v", s2.LocalAddr(), c2.LocalAddr())
		inodes, err := SocketInodes(os.Getpid())
		require.NoError(t, err)
		assert.True(t, inodes[so.Inode])
	}

	u, err := ReadUsage(os.Getpid())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, u.SocketFDs, 3)
	assert.Greater(t, u.FDs, u.SocketFDs)
	assert.Equal(t, u.FDs-u.SocketFDs, u.OtherFDs())
	assert.Positive(t, u.RSSKB)
	assert.Positive(t, u.Threads)
}

// TestChildExit: a child is among the descendants, its command line is
// read, and ExitWatch sees it exit (not reaped: Wait still gets its
// status).
func TestChildExit(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	require.NoError(t, cmd.Start())
	pid := cmd.Process.Pid
	w, err := WatchExit(pid)
	require.NoError(t, err)
	defer w.Close()
	assert.Contains(t, Descendants(os.Getpid()), pid)
	args, err := Cmdline(pid)
	require.NoError(t, err)
	assert.Equal(t, []string{"sleep", "30"}, args)
	assert.False(t, Gone(pid))
	require.NoError(t, cmd.Process.Signal(os.Interrupt))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	at, err := w.Wait(ctx)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), at, 5*time.Second)
	assert.True(t, Gone(pid), "a zombie has exited")
	require.Error(t, cmd.Wait(), "the watch does not reap: Wait gets the status")

	// An exit is reported even to a context that has ended.
	ended, cancelEnded := context.WithCancel(context.Background())
	cancelEnded()
	_, err = w.Wait(ended)
	require.NoError(t, err)

	// Gone before the watch: Wait returns at once.
	w2, err := WatchExit(pid)
	require.NoError(t, err)
	defer w2.Close()
	_, err = w2.Wait(ctx)
	require.NoError(t, err)

	// A live process and a context that ends.
	cmd = exec.Command("sleep", "30")
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	w3, err := WatchExit(cmd.Process.Pid)
	require.NoError(t, err)
	defer w3.Close()
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	_, err = w3.Wait(short)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}
