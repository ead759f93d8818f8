//go:build !linux

package plugin

import "os/exec"

// setParentDeath does nothing: only Linux has a parent-death signal. On other
// systems a plugin outlives a host killed with SIGKILL until its next write
// to the closed connection fails; Close still ends every plugin.
func setParentDeath(*exec.Cmd) {}

// lockThread does nothing: there is no thread-scoped signal to protect.
func lockThread() {}
