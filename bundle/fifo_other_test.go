//go:build !unix

package bundle_test

import (
	"errors"
	"time"
)

func mkfifo(string) error { return errors.New("not supported") }

func cpuTime() time.Duration { return 0 }
