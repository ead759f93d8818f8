//go:build !unix

package sdnotify

import "time"

func barrierUnix(socket string, timeout time.Duration) (bool, error) {
	return false, ErrNotSupported
}
