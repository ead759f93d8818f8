//go:build unix && !linux

package control

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
)

func getpid() int  { return os.Getpid() }
func getppid() int { return os.Getppid() }

// Addr is the control address of the process pid: a socket file in the
// temporary directory.
func Addr(pid int) string {
	return filepath.Join(os.TempDir(), "handoff-control-"+strconv.Itoa(pid)+".sock")
}

func listenUnix(addr string) (*net.UnixListener, error) {
	_ = os.Remove(addr) // a stale file from a process that had our pid
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(true)
	return ln, nil
}

// Peer credentials are not checked on this OS: the socket is created with
// the process umask in the temporary directory.
func checkChild(c *net.UnixConn) (int, error)     { return 0, nil }
func checkParent(c *net.UnixConn, ppid int) error { return nil }

// HandOverSupported says whether this platform has the fd channel. macOS
// has no SOCK_SEQPACKET unix sockets; the BSDs are untested: connections
// are drained, not handed over.
const HandOverSupported = false

// FDAddr is the fd-channel address of the process pid.
func FDAddr(pid int) string {
	return filepath.Join(os.TempDir(), "handoff-fds-"+strconv.Itoa(pid)+".sock")
}

func listenFDs(addr string) (*net.UnixListener, error) { return nil, ErrNotSupported }

// WelcomeFileSupported says whether this platform has the welcome file.
const WelcomeFileSupported = false

// NewWelcomeFile returns ErrNotSupported: the welcome goes on the channel.
func NewWelcomeFile() (*os.File, error) { return nil, ErrNotSupported }
