package upgrader

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
)

// writePIDFile replaces path atomically with pid: a temporary file in the same
// directory, synced, then renamed over path. Readers (systemd's PIDFile=)
// see the old content or the new, never a partial one.
func writePIDFile(path string, pid int) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after a successful rename
	if _, err := f.WriteString(strconv.Itoa(pid) + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// removePIDFile removes path if it still names pid.
func removePIDFile(path string, pid int) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	if string(bytes.TrimSpace(b)) == strconv.Itoa(pid) {
		_ = os.Remove(path)
	}
}
