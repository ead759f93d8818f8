package bundle

import (
	"os"
	"strconv"
)

// sendfileMin is the size from which a file is also kept in an unlinked
// temporary file, so that its responses can leave through sendfile(2), as
// http.FileServer's do, instead of being copied from memory into the
// socket. For a 1 MiB file on loopback that copy costs about a sixth of the
// throughput; for small files the header work dominates and memory is
// faster.
const sendfileMin = 256 << 10

// spill gives every file of b from sendfileMin bytes on a copy on disk,
// which a request opens again through /proc/self/fd for a file description
// (an offset) of its own. A file that cannot be spilled (no temporary
// space) is served from memory.
func (b *Bundle) spill() {
	for _, f := range b.files {
		if len(f.data) < sendfileMin {
			continue
		}
		t, err := os.CreateTemp("", "handoff-bundle-")
		if err != nil {
			return
		}
		_ = os.Remove(t.Name()) // the open file lives on; nothing is left on disk
		if _, err := t.Write(f.data); err != nil {
			t.Close()
			continue
		}
		f.disk = t
		f.diskPath = "/proc/self/fd/" + strconv.Itoa(int(t.Fd()))
	}
}
