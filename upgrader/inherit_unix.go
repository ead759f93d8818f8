//go:build unix

package upgrader

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// checkInherited refuses, with a clear error, a process that claims a parent
// but lacks the pipes a parent passes: reading them would otherwise fail
// obscurely or block on an unrelated fd.
func checkInherited() error {
	if os.Getenv(sentinelEnv) == "" {
		return nil
	}
	for _, fd := range []int{3, 4} {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("%w: %s is set but fd %d is not open (%v); unset it to start a first generation", ErrMalformedEnvironment, sentinelEnv, fd, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFIFO {
			return fmt.Errorf("%w: %s is set but fd %d is not a pipe from a parent; unset it to start a first generation", ErrMalformedEnvironment, sentinelEnv, fd)
		}
	}
	return nil
}

// kill sends SIGKILL to pid.
func kill(pid int) { _ = unix.Kill(pid, unix.SIGKILL) }
