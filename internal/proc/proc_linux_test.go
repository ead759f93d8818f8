//go:build linux

package proc

import (
	"context"
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

func TestParseHexAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1F90":                         "127.0.0.1:8080",
		"00000000:0000":                         "0.0.0.0:0",
		"00000000000000000000000001000000:01BB": "[::1]:443",
		"0000000000000000FFFF00000100007F:1F90": "127.0.0.1:8080", // IPv4-mapped, unmapped
	} {
		got, err := parseHexAddr(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got.String(), in)
	}
	for _, bad := range []string{"", "0100007F", "0100007F:XYZ", "01007F:0050", "zz00007F:0050"} {
		_, err := parseHexAddr(bad)
		assert.Error(t, err, bad)
	}
}

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
	socks, err := TCPSockets()
	require.NoError(t, err)
	lnAddr := netip.MustParseAddrPort(ln.Addr().String())
	clientAddr := netip.MustParseAddrPort(c.LocalAddr().String())
	var listening, accepted bool
	for _, so := range socks {
		switch {
		case so.Local == lnAddr && so.State == TCPListen:
			listening = inodes[so.Inode]
		case so.Local == lnAddr && so.Remote == clientAddr:
			accepted = inodes[so.Inode] && so.State == 1
		}
	}
	assert.True(t, listening, "the listener")
	assert.True(t, accepted, "the accepted connection, established")

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
	cmd := exec.Command("sleep", "0.2")
	require.NoError(t, cmd.Start())
	pid := cmd.Process.Pid
	w, err := WatchExit(pid)
	require.NoError(t, err)
	defer w.Close()
	assert.Contains(t, Descendants(os.Getpid()), pid)
	args, err := Cmdline(pid)
	require.NoError(t, err)
	assert.Equal(t, []string{"sleep", "0.2"}, args)
	assert.False(t, Gone(pid))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	at, err := w.Wait(ctx)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), at, 5*time.Second)
	assert.True(t, Gone(pid), "a zombie has exited")
	require.NoError(t, cmd.Wait(), "the watch does not reap")

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
