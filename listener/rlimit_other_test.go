//go:build !unix

package listener_test

import "errors"

func raiseFileLimit() (uint64, error) {
	return 0, errors.New("no RLIMIT_NOFILE on this platform")
}
