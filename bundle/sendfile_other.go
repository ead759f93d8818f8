//go:build !linux

package bundle

// spill does nothing here: files are served from memory. A disk copy needs
// a file removed while open (refused on Windows) and a way for each
// request to open its own description of it (Linux's /proc/self/fd; a
// /dev/fd open shares the offset elsewhere).
func (b *Bundle) spill() {}
