package bundle_test

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/bundle"
)

func withManifest(files map[string]string) map[string]string {
	out := map[string]string{}
	var names []string
	for n, d := range files {
		out[n] = d
		names = append(names, n)
	}
	sort.Strings(names)
	var m strings.Builder
	for _, n := range names {
		sum := sha256.Sum256([]byte(files[n]))
		fmt.Fprintf(&m, "%x  %s\n", sum, n)
	}
	out["SHA256SUMS"] = m.String()
	return out
}

var good = map[string]string{
	"index.html":               `<html><script src="/assets/app-1a2b3c4d.js"></script></html>`,
	"assets/app-1a2b3c4d.js":   "console.log('good')",
	"assets/logo-9f8e7d6c.svg": "<svg/>",
}

// refuseCase is one kind of bad bundle: build writes it in dir and returns
// its path; the refusal wraps is (when set) and its message says says.
type refuseCase struct {
	name  string
	opts  bundle.Options
	build func(t *testing.T, dir string) string
	is    error
	says  string
}

func zipAt(entries []entry) func(*testing.T, string) string {
	return func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "bad.zip")
		writeAtomic(t, p, zipBytes(t, entries))
		return p
	}
}

func tgzAt(entries []entry) func(*testing.T, string) string {
	return func(t *testing.T, dir string) string {
		p := filepath.Join(dir, "bad.tar.gz")
		writeAtomic(t, p, tarGzBytes(t, entries))
		return p
	}
}

func bytesAt(name string, data []byte) func(*testing.T, string) string {
	return func(t *testing.T, dir string) string {
		p := filepath.Join(dir, name)
		writeAtomic(t, p, data)
		return p
	}
}

// treeWith is the good bundle as a directory, changed by extra.
func treeWith(extra func(t *testing.T, root, dir string)) func(*testing.T, string) string {
	return func(t *testing.T, dir string) string {
		root := filepath.Join(dir, "badtree")
		writeTree(t, root, good)
		extra(t, root, dir)
		return root
	}
}

// plus is the good bundle's entries and extra.
func plus(extra ...entry) []entry { return append(sortedEntries(good), extra...) }

// refuseCases is the table of TestRefusedBundlesKeepServing, one case a
// line where it fits.
func refuseCases(t *testing.T) []refuseCase {
	big := strings.Repeat("\x00", 4<<20) // 4 MiB of zeros: deflates to ~4 KiB
	goodZip := zipBytes(t, sortedEntries(good))
	goodTgz := tarGzBytes(t, sortedEntries(good))
	manifestOpts := bundle.Options{Manifest: "SHA256SUMS"}
	return []refuseCase{
		{"zip path traversal", bundle.Options{}, zipAt(plus(entry{name: "../../evil.sh", data: "x"})), bundle.ErrUnsafePath, `"../../evil.sh": path traversal`},
		{"zip-slip backslash", bundle.Options{}, zipAt(plus(entry{name: `..\..\evil.exe`, data: "x"})), bundle.ErrUnsafePath, "backslash"},
		{"zip absolute path", bundle.Options{}, zipAt(plus(entry{name: "/etc/cron.d/evil", data: "x"})), bundle.ErrUnsafePath, `"/etc/cron.d/evil": absolute path`},
		{"zip drive letter", bundle.Options{}, zipAt(plus(entry{name: "C:/evil", data: "x"})), bundle.ErrUnsafePath, "absolute path"},
		{"tar.gz path traversal", bundle.Options{}, tgzAt(plus(entry{name: "assets/../../../evil", data: "x"})), bundle.ErrUnsafePath, "path traversal"},
		{"tar.gz absolute path", bundle.Options{}, tgzAt(plus(entry{name: "/tmp/evil", data: "x"})), bundle.ErrUnsafePath, "absolute path"},
		{"zip symlink out", bundle.Options{}, zipAt(plus(entry{name: "passwd", link: "../../../etc/passwd"})), bundle.ErrEscapingSymlink, `"passwd" -> "../../../etc/passwd"`},
		{"tar.gz absolute symlink", bundle.Options{}, tgzAt(plus(entry{name: "assets/x", link: "/etc/shadow"})), bundle.ErrEscapingSymlink, "absolute target"},
		{"tar.gz dangling symlink", bundle.Options{}, tgzAt(plus(entry{name: "x", link: "nowhere"})), bundle.ErrEscapingSymlink, "target not in the bundle"},
		{"tar.gz hard link out", bundle.Options{}, tgzAt(plus(entry{name: "x", link: "../etc/passwd", hard: true})), bundle.ErrEscapingSymlink, `hard link "x" -> "../etc/passwd"`},
		{"directory symlink out", bundle.Options{}, treeWith(func(t *testing.T, root, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "secret"), []byte("s"), 0o600))
			require.NoError(t, os.Symlink("../../secret", filepath.Join(root, "assets", "leak")))
		}), bundle.ErrEscapingSymlink, `"assets/leak" -> "../../secret": bundle: link leaves the bundle`},
		{"directory symlink out, absolute", bundle.Options{}, treeWith(func(t *testing.T, root, dir string) {
			require.NoError(t, os.Symlink("/etc", filepath.Join(root, "etc")))
		}), bundle.ErrEscapingSymlink, `"etc" -> "/etc"`},
		{"directory broken symlink", bundle.Options{}, treeWith(func(t *testing.T, root, dir string) {
			require.NoError(t, os.Symlink("gone.js", filepath.Join(root, "assets", "x.js")))
		}), bundle.ErrEscapingSymlink, "broken"},
		{"directory symlink loop", bundle.Options{}, treeWith(func(t *testing.T, root, dir string) {
			require.NoError(t, os.Symlink("..", filepath.Join(root, "assets", "up")))
		}), nil, "assets/up"},
		{"directory hard link to a file outside", bundle.Options{}, treeWith(func(t *testing.T, root, dir string) {
			secret := filepath.Join(dir, "passwd")
			require.NoError(t, os.WriteFile(secret, []byte("root:x:0:0"), 0o600))
			require.NoError(t, os.Link(secret, filepath.Join(root, "assets", "passwd.txt")))
		}), bundle.ErrHardLink, `"assets/passwd.txt" has 2 links`},
		{"directory hard link inside", bundle.Options{}, treeWith(func(t *testing.T, root, dir string) {
			require.NoError(t, os.Link(filepath.Join(root, "index.html"), filepath.Join(root, "copy.html")))
		}), bundle.ErrHardLink, "has 2 links"},
		{"too many files", bundle.Options{MaxFiles: 4}, zipAt(plus(entry{name: "a", data: "1"}, entry{name: "b", data: "2"})), bundle.ErrTooLarge, "more than 4 files (MaxFiles)"},
		{"too many bytes", bundle.Options{MaxBytes: 1 << 20}, treeWith(func(t *testing.T, root, dir string) {
			require.NoError(t, os.WriteFile(filepath.Join(root, "big.bin"), make([]byte, 2<<20), 0o644))
		}), bundle.ErrTooLarge, "MaxBytes"},
		{"zip bomb", bundle.Options{MaxBytes: 1 << 20}, zipAt(plus(entry{name: "bomb.bin", data: big})), bundle.ErrTooLarge, `"bomb.bin": zip declares more than 1048576 bytes in all (MaxBytes)`},
		{"zip bomb lying about its size", bundle.Options{MaxBytes: 1 << 20}, bytesAt("liar.zip", lyingZip(t, big)), bundle.ErrFormat, `"bomb.bin"`},
		{"tar.gz bomb", bundle.Options{MaxBytes: 1 << 20}, tgzAt(plus(entry{name: "bomb.bin", data: big})), bundle.ErrTooLarge, "MaxBytes"},
		{"manifest mismatch", manifestOpts, func(t *testing.T, dir string) string {
			files := withManifest(good)
			files["assets/app-1a2b3c4d.js"] = "console.log('tampered')"
			return zipAt(sortedEntries(files))(t, dir)
		}, bundle.ErrManifest, `"assets/app-1a2b3c4d.js" has SHA-256`},
		{"manifest misses a file", manifestOpts, func(t *testing.T, dir string) string {
			files := withManifest(good)
			files["extra.js"] = "x"
			return tgzAt(sortedEntries(files))(t, dir)
		}, bundle.ErrManifest, `does not list "extra.js"`},
		{"manifest lists a missing file", manifestOpts, func(t *testing.T, dir string) string {
			files := withManifest(good)
			delete(files, "assets/logo-9f8e7d6c.svg")
			return zipAt(sortedEntries(files))(t, dir)
		}, bundle.ErrManifest, `lists "assets/logo-9f8e7d6c.svg", which is not in the bundle`},
		{"manifest absent", manifestOpts, zipAt(sortedEntries(good)), bundle.ErrManifest, `manifest "SHA256SUMS" not in the bundle`},
		{"checksum mismatch", bundle.Options{Checksum: bundle.SidecarChecksum}, func(t *testing.T, dir string) string {
			p := zipAt(sortedEntries(map[string]string{"index.html": "evil"}))(t, dir)
			sum := sha256.Sum256(goodZip) // the sidecar of another archive
			require.NoError(t, os.WriteFile(filepath.Join(dir, "live.sha256"), []byte(hex.EncodeToString(sum[:])+"  live\n"), 0o644))
			return p
		}, bundle.ErrChecksum, "expected SHA-256"},
		{"checksum sidecar missing", bundle.Options{Checksum: bundle.SidecarChecksum}, func(t *testing.T, dir string) string {
			require.NoError(t, os.Remove(filepath.Join(dir, "live.sha256")))
			return zipAt(sortedEntries(good))(t, dir)
		}, bundle.ErrChecksum, "live.sha256: no such file"},
		{"truncated zip", bundle.Options{}, bytesAt("cut.zip", goodZip[:len(goodZip)/2]), bundle.ErrFormat, "truncated or not a zip"},
		{"truncated tar.gz", bundle.Options{}, bytesAt("cut.tar.gz", goodTgz[:len(goodTgz)-6]), bundle.ErrFormat, "truncated archive"},
		{"tar.gz with bad gzip checksum", bundle.Options{}, bytesAt("crc.tar.gz", corruptTrailer(goodTgz)), bundle.ErrFormat, "checksum"},
		{"zip with corrupt data", bundle.Options{}, bytesAt("crc.zip", corruptZipData(t)), bundle.ErrFormat, "index.html"},
		{"not an archive", bundle.Options{}, bytesAt("notes.txt", []byte("hello, not a bundle")), bundle.ErrFormat, "not a directory, a zip or a tar.gz"},
		{"empty file", bundle.Options{}, bytesAt("empty.zip", nil), bundle.ErrFormat, "not a directory, a zip or a tar.gz"},
		{"missing path", bundle.Options{}, func(t *testing.T, dir string) string { return filepath.Join(dir, "nope.zip") }, bundle.ErrFormat, "no such file"},
		{"unreadable archive", bundle.Options{}, func(t *testing.T, dir string) string {
			if os.Geteuid() == 0 {
				// root reads mode-000 files: use a file whose read fails
				// with EIO instead.
				if _, err := os.Stat("/proc/self/mem"); err != nil {
					t.Skip("running as root without /proc/self/mem")
				}
				p := filepath.Join(dir, "unreadable.zip")
				require.NoError(t, os.Symlink("/proc/self/mem", p))
				return p
			}
			p := bytesAt("unreadable.zip", goodZip)(t, dir)
			require.NoError(t, os.Chmod(p, 0o000))
			return p
		}, bundle.ErrFormat, "live"},
		{"fifo in directory", bundle.Options{}, treeWith(func(t *testing.T, root, dir string) {
			if err := mkfifo(filepath.Join(root, "pipe")); err != nil {
				t.Skip("mkfifo:", err)
			}
		}), bundle.ErrFormat, `"pipe": unsupported file type`},
		{"validate says no", bundle.Options{Validate: func(b *bundle.Bundle) error {
			if _, err := b.ReadFile("index.html"); err != nil {
				return fmt.Errorf("no index.html")
			}
			return nil
		}}, zipAt([]entry{{name: "app.js", data: "x"}}), nil, "no index.html"},
	}
}

// TestRefusedBundlesKeepServing loads a good bundle, then offers each kind
// of bad bundle: each is refused with an error naming the problem, and the
// good bundle keeps serving.
func TestRefusedBundlesKeepServing(t *testing.T) {
	for _, c := range refuseCases(t) {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			goodPath := filepath.Join(dir, "good")
			files := good
			if c.opts.Manifest != "" {
				files = withManifest(good)
			}
			writeTree(t, goodPath, files)
			if c.opts.Checksum != nil { // the sidecar of the Handler's path
				b, err := bundle.Load(context.Background(), goodPath, bundle.Options{})
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(dir, "live.sha256"), []byte(b.ID()), 0o644))
			}
			h, link := handlerAt(t, goodPath, c.opts)
			before := h.Value().Current()

			deploy(t, link, c.build(t, dir))
			err := h.Reload(context.Background())
			require.Error(t, err, "bad bundle accepted")
			t.Logf("refused: %v", err)
			if c.is != nil {
				assert.ErrorIs(t, err, c.is)
			}
			assert.ErrorContains(t, err, c.says)
			assert.Same(t, before, h.Value().Current(), "current version kept")
			w := get(t, h, "/assets/app-1a2b3c4d.js")
			assert.Equal(t, 200, w.Code)
			assert.Equal(t, good["assets/app-1a2b3c4d.js"], w.Body.String(), "good bundle still served")
		})
	}
}

// lyingZip stores data under a header that declares 100 bytes.
func lyingZip(t *testing.T, data string) []byte {
	var comp bytes.Buffer
	fw, _ := flate.NewWriter(&comp, flate.BestCompression)
	_, _ = fw.Write([]byte(data))
	require.NoError(t, fw.Close())
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{
		Name: "bomb.bin", Method: zip.Deflate,
		CRC32:              crc32.ChecksumIEEE([]byte(data)),
		CompressedSize64:   uint64(comp.Len()),
		UncompressedSize64: 100,
	})
	require.NoError(t, err)
	_, _ = w.Write(comp.Bytes())
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func corruptTrailer(tgz []byte) []byte {
	out := bytes.Clone(tgz)
	out[len(out)-8] ^= 0xff // CRC-32 of the gzip trailer
	return out
}

// corruptZipData flips a byte of index.html's stored data.
func corruptZipData(t *testing.T) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "index.html", Method: zip.Store})
	require.NoError(t, err)
	_, _ = w.Write([]byte("<html>hello hello hello</html>"))
	require.NoError(t, zw.Close())
	out := buf.Bytes()
	i := bytes.Index(out, []byte("hello hello"))
	out[i] = 'J'
	return out
}

// TestHardLinksWhenAllowed: Options.AllowHardLinks serves hard-linked
// files, as a deploy that hard-links its release directories needs; the
// default refuses them (see TestRefusedBundlesKeepServing).
func TestHardLinksWhenAllowed(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, filepath.Join(dir, "1"), good)
	// cp -al 1 2, then the changed file replaced in 2.
	writeTree(t, filepath.Join(dir, "2"), map[string]string{"index.html": "<html>two</html>"})
	for _, name := range []string{"assets/app-1a2b3c4d.js", "assets/logo-9f8e7d6c.svg"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "2", "assets"), 0o755))
		require.NoError(t, os.Link(filepath.Join(dir, "1", name), filepath.Join(dir, "2", name)))
	}
	_, err := bundle.Load(context.Background(), filepath.Join(dir, "2"), bundle.Options{})
	require.ErrorIs(t, err, bundle.ErrHardLink)

	h, link := handlerAt(t, filepath.Join(dir, "1"), bundle.Options{AllowHardLinks: true})
	swapTo(t, h, link, filepath.Join(dir, "2"))
	assert.Equal(t, "<html>two</html>", get(t, h, "/").Body.String())
	assert.Equal(t, good["assets/app-1a2b3c4d.js"], get(t, h, "/assets/app-1a2b3c4d.js").Body.String())
}
