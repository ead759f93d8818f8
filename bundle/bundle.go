package bundle

import (
	"bytes"
	"crypto/sha256"
	"io/fs"
	"os"
	"slices"
	"strings"
)

// Bundle is one loaded, verified, immutable set of files held in memory.
// It is safe for concurrent use.
type Bundle struct {
	id     string
	source string
	files  map[string]*file // by clean slash-separated name, no leading slash
	index  map[string]*file // directory ("" for the root) -> its index.html
	size   int64
}

// ID is the bundle's content hash: SHA-256 over the sorted names and
// contents of its files (hex). Two bundles with the same files have the same
// ID whatever their packaging, so reloading unchanged content swaps nothing.
func (b *Bundle) ID() string { return b.id }

// Source is the path the bundle was loaded from.
func (b *Bundle) Source() string { return b.source }

// Len is the number of files.
func (b *Bundle) Len() int { return len(b.files) }

// Size is the total size of the files in bytes.
func (b *Bundle) Size() int64 { return b.size }

// Names returns the file names, sorted, slash-separated, without a leading slash.
func (b *Bundle) Names() []string {
	names := make([]string, 0, len(b.files))
	for n := range b.files {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ReadFile returns a copy of the named file's content.
func (b *Bundle) ReadFile(name string) ([]byte, error) {
	f := b.files[strings.TrimPrefix(name, "/")]
	if f == nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return bytes.Clone(f.data), nil
}

// file is one file with everything ServeHTTP needs precomputed. Header
// values are kept as ready-made slices and assigned to the response header
// map directly, which saves an allocation per header per request; nothing
// in net/http writes into a header value slice.
type file struct {
	name     string
	data     []byte
	sum      [sha256.Size]byte
	etag     string
	hdrType  []string
	hdrTag   []string
	hdrLen   []string
	hdrCache []string
	hdrEnc   []string // set on precompressed variants only
	br, gz   *file    // precompressed siblings of an original
	disk     *os.File // copy for sendfile (sendfile.go), large files only
	diskPath string   // how a request opens disk on its own
}
