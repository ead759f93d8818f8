package bundle

import (
	"io"
	"net/http"
	"os"
)

// close releases the disk copies (see spill). Precompressed variants share
// their file's copy with the entry of their own name, so closing the
// entries of b.files closes each copy once.
func (b *Bundle) close() {
	for _, f := range b.files {
		if f.disk != nil {
			f.disk.Close()
		}
	}
}

// writeBody writes f's content to w: from the disk copy with sendfile when
// there is one and the platform lets a request open its own file
// description of it, else from memory.
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
