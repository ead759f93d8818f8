//go:build linux

package control

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/handoff-go/handoff/internal/proc"
)

func getpid() int  { return os.Getpid() }
func getppid() int { return os.Getppid() }

// Addr is the control address of the process pid: an abstract unix socket,
// so nothing is left on disk.
func Addr(pid int) string { return "@handoff-control-" + strconv.Itoa(pid) }

func listenUnix(addr string) (*net.UnixListener, error) {
	return net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
}

// HandOverSupported says whether this platform has the fd channel.
const HandOverSupported = true

// FDAddr is the fd-channel address of the process pid: an abstract unix
// socket of type SOCK_SEQPACKET.
func FDAddr(pid int) string { return "@handoff-fds-" + strconv.Itoa(pid) }

func listenFDs(addr string) (*net.UnixListener, error) {
	return net.ListenUnix("unixpacket", &net.UnixAddr{Name: addr, Net: "unixpacket"})
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}

func checkChild(c *net.UnixConn) (int, error) {
	cred, err := peerCred(c)
	if err != nil {
		return 0, fmt.Errorf("control: peer credentials: %w", err)
	}
	if int(cred.Uid) != os.Getuid() {
		return 0, fmt.Errorf("control: peer pid %d runs as uid %d, not %d", cred.Pid, cred.Uid, os.Getuid())
	}
	ppid, err := proc.ParentPID(int(cred.Pid))
	if err != nil {
		return 0, fmt.Errorf("control: read parent of %d: %w", cred.Pid, err)
	}
	if ppid != os.Getpid() {
		return 0, fmt.Errorf("control: peer pid %d is not a child of %d", cred.Pid, os.Getpid())
	}
	return int(cred.Pid), nil
}

func checkParent(c *net.UnixConn, ppid int) error {
	cred, err := peerCred(c)
	if err != nil {
		return fmt.Errorf("control: peer credentials: %w", err)
	}
	if int(cred.Pid) != ppid || int(cred.Uid) != os.Getuid() {
		return fmt.Errorf("control: listener is pid %d uid %d, expected parent %d uid %d", cred.Pid, cred.Uid, ppid, os.Getuid())
	}
	return nil
}

// WelcomeFileSupported says whether this platform has the welcome file.
const WelcomeFileSupported = true

// NewWelcomeFile creates an empty welcome file: a memfd, which lives in
// memory only and goes away with its last descriptor.
func NewWelcomeFile() (*os.File, error) {
	fd, err := unix.MemfdCreate("handoff-welcome", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("control: welcome file: %w", err)
	}
	return os.NewFile(uintptr(fd), "handoff-welcome"), nil
}
