package bundle

import (
	"io"
	"net/http"
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

// spill gives every file of b from sendfileMin bytes on a copy on disk. A
// file that cannot be spilled (no temporary space) is served from memory.
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

// close releases the disk copies. Precompressed variants share their
// file's copy with the entry of their own name, so closing the entries of
// b.files closes each copy once.
func (b *Bundle) close() {
	for _, f := range b.files {
		if f.disk != nil {
			f.disk.Close()
		}
	}
}

// writeBody writes f's content to w: from the disk copy with sendfile when
// there is one and the platform lets a request open its own file
// description of it (Linux: /proc/self/fd), else from memory.
func (f *file) writeBody(w http.ResponseWriter) {
	if f.disk != nil {
		if rf, ok := w.(io.ReaderFrom); ok {
			// A file description of its own per request: its own offset.
			if g, err := os.Open(f.diskPath); err == nil {
				defer g.Close()
				_, _ = rf.ReadFrom(io.LimitReader(g, int64(len(f.data))))
				return
			}
		}
	}
	_, _ = w.Write(f.data)
}
