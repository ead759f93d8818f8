package bundle_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/bundle"
)

// entry is one archive member. A non-empty link makes it a symlink (or,
// with hard set, a tar hard link).
type entry struct {
	name string
	data string
	link string
	hard bool
	dir  bool
}

func sortedEntries(files map[string]string) []entry {
	var out []entry
	for n, d := range files {
		out = append(out, entry{name: n, data: d})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// zipBytes builds a zip; fast (stored, not deflated) when asked, because
// deflate is slow under the race detector.
func zipBytes(t testing.TB, entries []entry, fast ...bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	method := zip.Deflate
	if len(fast) > 0 && fast[0] {
		method = zip.Store
	}
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: method}
		switch {
		case e.link != "":
			h.SetMode(fs.ModeSymlink | 0o777)
			e.data = e.link
		case e.dir:
			h.SetMode(fs.ModeDir | 0o755)
		default:
			h.SetMode(0o644)
		}
		w, err := zw.CreateHeader(h)
		require.NoError(t, err)
		_, err = w.Write([]byte(e.data))
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func tarGzBytes(t testing.TB, entries []entry, fast ...bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	level := gzip.DefaultCompression
	if len(fast) > 0 && fast[0] {
		level = gzip.HuffmanOnly
	}
	gz, err := gzip.NewWriterLevel(&buf, level)
	require.NoError(t, err)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg}
		switch {
		case e.link != "" && e.hard:
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, e.link, 0
		case e.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		case e.dir:
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		}
		require.NoError(t, tw.WriteHeader(h))
		if h.Size > 0 {
			_, err := tw.Write([]byte(e.data))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	return buf.Bytes()
}

func writeTree(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for n, d := range files {
		p := filepath.Join(root, filepath.FromSlash(n))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(d), 0o644))
	}
}

// writeAtomic writes data next to path and renames it into place, the
// deploy step the package recommends.
func writeAtomic(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	require.NoError(t, os.WriteFile(tmp, data, 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

// deploy points link at target (a directory or an archive) as a deploy
// does: a new symbolic link renamed over the old one.
func deploy(t testing.TB, link, target string) {
	t.Helper()
	tmp := link + ".new"
	require.NoError(t, os.Symlink(target, tmp))
	require.NoError(t, os.Rename(tmp, link))
}

// handlerAt returns a Handler on a symbolic link to target, with target
// loaded; the test closes it. A deploy to the link and a Reload swap.
func handlerAt(t testing.TB, target string, opts bundle.Options) (h *bundle.Handler, link string) {
	t.Helper()
	link = filepath.Join(filepath.Dir(target), "live")
	deploy(t, link, target)
	h = bundle.New(link, opts)
	t.Cleanup(func() { assert.NoError(t, h.Close()) })
	require.NoError(t, h.Reload(context.Background()))
	return h, link
}

// swapTo deploys target to link and reloads h; it returns the current
// version's Seq.
func swapTo(t testing.TB, h *bundle.Handler, link, target string) uint64 {
	t.Helper()
	deploy(t, link, target)
	require.NoError(t, h.Reload(context.Background()))
	return h.Value().Current().Seq
}
