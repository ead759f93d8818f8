package plugin

import (
	"fmt"
	"os"
	"path/filepath"
)

// privateDirPrefix names the private directories of Managers in the
// system's temporary directory.
const privateDirPrefix = "handoff-plugin-"

// privateDir is a Manager's own directory, handoff-plugin-* in the system's
// temporary directory: it holds the lock file, the staged binaries unless
// Options.StageDir is set, and go-plugin's unix sockets when their paths
// fit there. Close removes it. A host killed before Close leaves it behind;
// the next New removes it (reclaimStale).
type privateDir struct {
	path   string
	unlock func() // releases the lock; nil where there is none
}

// newPrivateDir creates and locks a private directory.
func newPrivateDir() (*privateDir, error) {
	path, err := os.MkdirTemp("", privateDirPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("plugin: private directory: %w", err)
	}
	unlock, err := lockPrivateDir(path)
	if err != nil {
		_ = os.RemoveAll(path)
		return nil, fmt.Errorf("plugin: private directory: %w", err)
	}
	return &privateDir{path: path, unlock: unlock}, nil
}

// remove removes the directory, then releases its lock (in that order, so
// that no other Manager reclaims it meanwhile).
func (d *privateDir) remove() error {
	err := os.RemoveAll(d.path)
	if d.unlock != nil {
		d.unlock()
	}
	if err != nil {
		return fmt.Errorf("plugin: remove the private directory: %w", err)
	}
	return nil
}

// reclaimStale removes the private directories whose Manager is provably
// gone (see reclaim) and reports each as an EventReclaimed.
func reclaimStale(emit func(Event)) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), privateDirPrefix+"*"))
	for _, dir := range dirs {
		removed, err := reclaim(dir)
		if removed || err != nil {
			emit(Event{Kind: EventReclaimed, Path: dir, Err: err})
		}
	}
}
