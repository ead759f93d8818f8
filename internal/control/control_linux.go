//go:build linux

package control

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

func getpid() int  { return os.Getpid() }
func getppid() int { return os.Getppid() }

// Addr is the control address of the process pid: an abstract unix socket,
// so nothing is left on disk.
func Addr(pid int) string { return "@handoff-control-" + strconv.Itoa(pid) }

func listenUnix(addr string) (*net.UnixListener, error) {
	return net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
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
	ppid, err := parentOf(int(cred.Pid))
	if err != nil {
		return 0, err
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

// parentOf reads the parent pid of pid from /proc.
func parentOf(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("control: read parent of %d: %w", pid, err)
	}
	// The command name (field 2) is in parentheses and may contain spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("control: malformed /proc/%d/stat", pid)
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("control: malformed /proc/%d/stat", pid)
	}
	return strconv.Atoi(string(f[1]))
}
