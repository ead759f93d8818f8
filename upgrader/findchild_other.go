//go:build !linux

package upgrader

import "time"

// canFindChild: without /proc a child that never introduced itself cannot be
// found; tableflip's own timeout (UpgradeTimeout+DrainTimeout+1s) kills it.
const canFindChild = false

func findChild() int { return 0 }

// waitGone cannot wait for another process's exit here; tableflip reaps the
// child on its own.
func waitGone(pid int, timeout time.Duration) {}
