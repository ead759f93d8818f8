//go:build !linux

package upgrader

import "time"

// sdWaitControl: systemd runs on Linux only.
func (u *Upgrader) sdWaitControl(timeout time.Duration) {}
