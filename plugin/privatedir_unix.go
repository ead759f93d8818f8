//go:build unix && !aix

package plugin

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// lockName is the file in a private directory that its Manager holds
// locked for its whole life: a directory whose lock can be taken belongs to
// a host that is gone.
const lockName = "lock"

// lockPrivateDir creates the lock file of dir and holds it locked (flock)
// until the returned func is called; the kernel drops the lock when the
// process dies, however it dies. The file is locked under a temporary name
// and renamed into place, so that a lock file another Manager can see is
// always held: reclaim never mistakes a directory being created for a stale
// one.
func lockPrivateDir(dir string) (func(), error) {
	tmp := filepath.Join(dir, lockName+".new")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, lockName)); err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = f.Close() }, nil
}

// reclaim removes dir if it is a private directory of this user whose
// Manager is gone: its lock file can be locked. It reports whether it
// removed dir. A directory without a lock file (from a version of this
// package that had none, or one killed within the instant between creating
// it and locking it) cannot be proved stale and is left alone.
func reclaim(dir string) (bool, error) {
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() {
		return false, nil
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
		return false, nil
	}
	lock := filepath.Join(dir, lockName)
	f, err := os.OpenFile(lock, os.O_RDWR|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false, nil
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return false, nil // held: its Manager is alive (EWOULDBLOCK), or unknowable
	}
	// Another New may have reclaimed dir between the open and the lock, and
	// a new Manager may even have created a directory of the same name:
	// the lock counts only if it is still the lock file of dir.
	held, err := f.Stat()
	if err != nil {
		return false, nil
	}
	if now, err := os.Lstat(lock); err != nil || !os.SameFile(held, now) {
		return false, nil
	}
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return true, err
	}
	return true, nil
}

// socketParent is where go-plugin creates the directory of a plugin's unix
// socket: the private directory, so that a killed host's sockets go with
// it, when the socket's path fits in a sockaddr_un (104 bytes on macOS,
// whose temporary directory is long); else "" (go-plugin's default, the
// system's temporary directory).
func (d *privateDir) socketParent() string {
	// go-plugin's part: "/plugin-dir" + up to 10 digits + "/plugin" + up to 10.
	const goPluginPart = len("/plugin-dir") + 10 + len("/plugin") + 10
	if len(d.path)+goPluginPart >= 104 {
		return ""
	}
	return d.path
}
