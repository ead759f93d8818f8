//go:build !unix || aix

package plugin

// lockPrivateDir does nothing: without flock there is no lock a dead
// process releases, so private directories are not reclaimed here. (On
// Windows a plugin outlives a killed host anyway, and its running binary
// could not be removed.)
func lockPrivateDir(string) (func(), error) { return nil, nil }

// reclaim removes nothing: see lockPrivateDir.
func reclaim(string) (bool, error) { return false, nil }

// socketParent leaves go-plugin's sockets (TCP on Windows) where it puts
// them.
func (d *privateDir) socketParent() string { return "" }
