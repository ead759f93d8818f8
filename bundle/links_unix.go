//go:build unix

package bundle

import (
	"os"
	"syscall"
)

// linkCount reports how many directory entries (hard links) name the open
// file f, and whether the platform says.
func linkCount(_ *os.File, fi os.FileInfo) (n uint64, known bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Nlink), true
}
