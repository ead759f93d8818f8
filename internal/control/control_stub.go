//go:build !unix

package control

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
)

func getpid() int  { return os.Getpid() }
func getppid() int { return os.Getppid() }

// Addr is the control address of the process pid.
func Addr(pid int) string {
	return filepath.Join(os.TempDir(), "handoff-control-"+strconv.Itoa(pid)+".sock")
}

func listenUnix(addr string) (*net.UnixListener, error) { return nil, ErrNotSupported }

func checkChild(c *net.UnixConn) (int, error)     { return 0, ErrNotSupported }
func checkParent(c *net.UnixConn, ppid int) error { return ErrNotSupported }

// HandOverSupported says whether this platform has the fd channel.
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
