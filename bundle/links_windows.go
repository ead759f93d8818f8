//go:build windows

package bundle

import (
	"os"
	"syscall"
)

// linkCount reports how many directory entries (hard links) name the open
// file f, and whether the platform says.
func linkCount(f *os.File, _ os.FileInfo) (n uint64, known bool) {
	var d syscall.ByHandleFileInformation
	if err := syscall.GetFileInformationByHandle(syscall.Handle(f.Fd()), &d); err != nil {
		return 0, false
	}
	return uint64(d.NumberOfLinks), true
}
