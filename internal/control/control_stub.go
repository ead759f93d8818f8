//go:build !unix

package control

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
)

// ErrNotSupported: there is no control channel on this platform, as there
// are no upgrades.
var ErrNotSupported = errors.New("control: not supported on this platform")

func getpid() int  { return os.Getpid() }
func getppid() int { return os.Getppid() }

// Addr is the control address of the process pid.
func Addr(pid int) string {
	return filepath.Join(os.TempDir(), "handoff-control-"+strconv.Itoa(pid)+".sock")
}

func listenUnix(addr string) (*net.UnixListener, error) { return nil, ErrNotSupported }

func checkChild(c *net.UnixConn) (int, error)     { return 0, ErrNotSupported }
func checkParent(c *net.UnixConn, ppid int) error { return ErrNotSupported }
