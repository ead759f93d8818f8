//go:build !linux

package sdnotify

import "time"

func barrierUnix(socket string, timeout time.Duration) (bool, error) {
	return false, ErrNotSupported
}
