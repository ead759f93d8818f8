//go:build unix

package upgrader

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// sentinelEnv is the variable tableflip sets in a process it starts; with it
// set, fds 3 and 4 must be the pipes to the parent.
const sentinelEnv = "TABLEFLIP_HAS_PARENT_7DIU3"

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
