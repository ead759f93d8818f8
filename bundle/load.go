package bundle

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Errors a refused bundle wraps, for callers that branch on the reason.
// The message around them names the entry and the limit or value at fault.
var (
	// ErrUnsafePath: an entry name with "..", an absolute path, a
	// backslash or a NUL (path traversal, zip-slip).
	ErrUnsafePath = errors.New("unsafe path")
	// ErrEscapingSymlink: a symbolic link (or hard link) that points
	// outside the bundle, or nowhere.
	ErrEscapingSymlink = errors.New("symlink leaves the bundle")
	// ErrTooLarge: more files or bytes than Options.MaxFiles or
	// Options.MaxBytes allow (zip bombs included: sizes are enforced while
	// decompressing, not taken from the archive's headers).
	ErrTooLarge = errors.New("bundle too large")
	// ErrManifest: the manifest named by Options.Manifest is missing,
	// malformed, or does not match the files.
	ErrManifest = errors.New("manifest mismatch")
	// ErrChecksum: the checksum from Options.Checksum does not match.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrFormat: not a directory, zip or tar.gz, or an archive that is
	// unreadable or truncated.
	ErrFormat = errors.New("unreadable bundle")
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

// raw is a file as read from the source, before hashing.
type raw struct {
	data []byte
	link string // symlink target (archives), resolved before hashing
	hard bool   // link is an archive-root-relative hard link
}

// collector gathers files while enforcing the limits.
type collector struct {
	source   string
	maxFiles int
	maxBytes int64
	files    map[string]*raw
	count    int
	bytes    int64
}

func (c *collector) errorf(format string, args ...any) error {
	return fmt.Errorf("bundle: %s: "+format, append([]any{c.source}, args...)...)
}

// reserve checks, before reading, that one more file of size n fits.
func (c *collector) reserve(name string, n int64) error {
	if c.count+1 > c.maxFiles {
		return c.errorf("more than %d files (MaxFiles) at %q: %w", c.maxFiles, name, ErrTooLarge)
	}
	if n < 0 || n > c.maxBytes-c.bytes {
		return c.errorf("%q: more than %d bytes in all (MaxBytes): %w", name, c.maxBytes, ErrTooLarge)
	}
	return nil
}

// read reads exactly the declared size n from r and checks that r ends there
// (which also makes archive readers verify their checksums).
func (c *collector) read(name string, r io.Reader, n int64) ([]byte, error) {
	if err := c.reserve(name, n); err != nil {
		return nil, err
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, c.errorf("%q: truncated or corrupt: %v: %w", name, err, ErrFormat)
	}
	var one [1]byte
	switch k, err := r.Read(one[:]); {
	case k > 0:
		return nil, c.errorf("%q: larger than its declared %d bytes: %w", name, n, ErrTooLarge)
	case err != nil && err != io.EOF:
		return nil, c.errorf("%q: corrupt, or data past its declared %d bytes: %v: %w", name, n, err, ErrFormat)
	}
	return data, nil
}

func (c *collector) add(name string, r *raw) error {
	if _, dup := c.files[name]; dup {
		return c.errorf("duplicate entry %q: %w", name, ErrFormat)
	}
	if r.link == "" {
		if err := c.reserve(name, int64(len(r.data))); err != nil {
			return err
		}
		c.bytes += int64(len(r.data))
	} else if c.count+1 > c.maxFiles {
		return c.errorf("more than %d files (MaxFiles) at %q: %w", c.maxFiles, name, ErrTooLarge)
	}
	c.count++
	c.files[name] = r
	return nil
}

// cleanName validates an archive entry name and returns it clean, relative,
// slash-separated; "" for the root directory.
func cleanName(rawName string) (string, error) {
	switch {
	case rawName == "":
		return "", fmt.Errorf("empty entry name: %w", ErrUnsafePath)
	case strings.ContainsRune(rawName, 0):
		return "", fmt.Errorf("entry %q: NUL in name: %w", rawName, ErrUnsafePath)
	case strings.Contains(rawName, `\`):
		return "", fmt.Errorf("entry %q: backslash in name (zip-slip on Windows): %w", rawName, ErrUnsafePath)
	case strings.HasPrefix(rawName, "/"),
		len(rawName) >= 2 && rawName[1] == ':' && ('a' <= rawName[0]|0x20 && rawName[0]|0x20 <= 'z'):
		return "", fmt.Errorf("entry %q: absolute path: %w", rawName, ErrUnsafePath)
	}
	for _, elem := range strings.Split(rawName, "/") {
		if elem == ".." {
			return "", fmt.Errorf("entry %q: path traversal (..): %w", rawName, ErrUnsafePath)
		}
	}
	name := path.Clean(rawName)
	if name == "." {
		return "", nil
	}
	if !fs.ValidPath(name) {
		return "", fmt.Errorf("entry %q: invalid name: %w", rawName, ErrUnsafePath)
	}
	return name, nil
}

// resolveLinks replaces archive symlinks and hard links by the files they
// point to (sharing the data); a link to a directory aliases the files
// under it. Links leaving the bundle or pointing nowhere are refused.
func (c *collector) resolveLinks() error {
	var names []string
	for n, r := range c.files {
		if r.link != "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		if err := c.resolve(name, 0); err != nil {
			return err
		}
	}
	return nil
}

func (c *collector) resolve(name string, depth int) error {
	r := c.files[name]
	if r == nil || r.link == "" {
		return nil
	}
	if depth > 40 {
		return c.errorf("link %q: too many levels of links: %w", name, ErrEscapingSymlink)
	}
	target := r.link
	if strings.HasPrefix(target, "/") || strings.Contains(target, `\`) {
		return c.errorf("link %q -> %q: absolute target: %w", name, target, ErrEscapingSymlink)
	}
	joined := target
	if !r.hard {
		joined = path.Join(path.Dir(name), target)
	}
	joined = path.Clean(joined)
	if joined == ".." || strings.HasPrefix(joined, "../") {
		return c.errorf("link %q -> %q: %w", name, target, ErrEscapingSymlink)
	}
	if t, ok := c.files[joined]; ok {
		if err := c.resolve(joined, depth+1); err != nil {
			return err
		}
		*r = raw{data: t.data}
		return nil
	}
	// A link to a directory: alias every file under it.
	prefix := joined + "/"
	if joined == "." {
		return c.errorf("link %q -> %q: link to the bundle root: %w", name, target, ErrEscapingSymlink)
	}
	var under []string
	for n := range c.files {
		if strings.HasPrefix(n, prefix) {
			under = append(under, n)
		}
	}
	if len(under) == 0 {
		return c.errorf("link %q -> %q: target not in the bundle: %w", name, target, ErrEscapingSymlink)
	}
	delete(c.files, name)
	c.count--
	slices.Sort(under)
	for _, n := range under {
		if err := c.resolve(n, depth+1); err != nil {
			return err
		}
		alias := name + "/" + strings.TrimPrefix(n, prefix)
		if _, dup := c.files[alias]; dup {
			return c.errorf("duplicate entry %q: %w", alias, ErrFormat)
		}
		if c.count+1 > c.maxFiles {
			return c.errorf("more than %d files (MaxFiles) at %q: %w", c.maxFiles, alias, ErrTooLarge)
		}
		c.count++
		c.files[alias] = &raw{data: c.files[n].data}
	}
	return nil
}

// Load reads the bundle at path (a directory, a .zip or a .tar.gz; the kind
// is told by content, not by name), checks it against the limits, the
// manifest and the checksum in opts, and returns it. Load only uses the
// loading fields of opts (MaxFiles, MaxBytes, Manifest, Checksum, Fallback,
// Validate, Immutable). A refused bundle gives an error that names the
// problem and wraps one of ErrUnsafePath, ErrEscapingSymlink, ErrTooLarge,
// ErrManifest, ErrChecksum or ErrFormat (or the Validate error).
func Load(ctx context.Context, path string, opts Options) (*Bundle, error) {
	opts = opts.withDefaults()
	c := &collector{source: path, maxFiles: opts.MaxFiles, maxBytes: opts.MaxBytes, files: map[string]*raw{}}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w: %w", err, ErrFormat)
	}
	var archiveSum string // hex SHA-256 of the archive file, for Checksum
	if fi.IsDir() {
		if err := c.loadDir(ctx, path); err != nil {
			return nil, err
		}
	} else {
		data, err := readArchive(path, fi.Size(), opts.MaxBytes)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		archiveSum = hex.EncodeToString(sum[:])
		switch {
		case bytes.HasPrefix(data, []byte("PK\x03\x04")), bytes.HasPrefix(data, []byte("PK\x05\x06")):
			err = c.loadZip(ctx, data)
		case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
			err = c.loadTarGz(ctx, data)
		default:
			err = c.errorf("not a directory, a zip or a tar.gz archive: %w", ErrFormat)
		}
		if err != nil {
			return nil, err
		}
		if err := c.resolveLinks(); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(c.files) == 0 {
		return nil, c.errorf("no files: %w", ErrFormat)
	}
	b := build(path, c.files, opts)
	if opts.Manifest != "" {
		if err := checkManifest(b, opts.Manifest); err != nil {
			return nil, c.errorf("%w", err)
		}
	}
	if opts.Checksum != nil {
		want, err := opts.Checksum(path)
		if err != nil {
			return nil, c.errorf("checksum: %v: %w", err, ErrChecksum)
		}
		got := b.id
		if archiveSum != "" {
			got = archiveSum
		}
		if want = strings.ToLower(strings.TrimSpace(want)); want != got {
			return nil, c.errorf("expected SHA-256 %s, got %s: %w", want, got, ErrChecksum)
		}
	}
	if opts.Fallback != "" && b.files[opts.Fallback] == nil {
		return nil, c.errorf("fallback document %q missing: %w", opts.Fallback, ErrFormat)
	}
	if opts.Validate != nil {
		if err := opts.Validate(b); err != nil {
			return nil, c.errorf("%w", err)
		}
	}
	return b, nil
}

func readArchive(path string, size, maxBytes int64) ([]byte, error) {
	// An archive is never much larger than what it holds.
	limit := maxBytes + maxBytes/8 + 1<<20
	if size > limit {
		return nil, fmt.Errorf("bundle: %s: archive of %d bytes, more than MaxBytes allows: %w", path, size, ErrTooLarge)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w: %w", err, ErrFormat)
	}
	return data, nil
}

// build hashes the files and precomputes what serving needs.
func build(source string, raws map[string]*raw, opts Options) *Bundle {
	b := &Bundle{source: source, files: make(map[string]*file, len(raws)), index: map[string]*file{}}
	names := make([]string, 0, len(raws))
	for n := range raws {
		names = append(names, n)
	}
	slices.Sort(names)
	sums := make([][sha256.Size]byte, len(names))
	parallel(len(names), func(i int) error {
		sums[i] = sha256.Sum256(raws[names[i]].data)
		return nil
	})
	tree := sha256.New()
	for i, n := range names {
		f := &file{name: n, data: raws[n].data, sum: sums[i]}
		f.etag = `"` + base64.RawURLEncoding.EncodeToString(f.sum[:18]) + `"`
		f.hdrTag = []string{f.etag}
		f.hdrLen = []string{strconv.Itoa(len(f.data))}
		f.hdrType = []string{contentType(n, f.data)}
		if n == opts.Fallback || !opts.Immutable(n) {
			f.hdrCache = cacheNoCache
		} else {
			f.hdrCache = cacheImmutable
		}
		b.files[n] = f
		b.size += int64(len(f.data))
		tree.Write([]byte(n))
		tree.Write([]byte{0})
		tree.Write(f.sum[:])
	}
	b.id = hex.EncodeToString(tree.Sum(nil))
	b.spill()
	for n, f := range b.files {
		for _, enc := range encodings {
			if orig := b.files[strings.TrimSuffix(n, enc.suffix)]; strings.HasSuffix(n, enc.suffix) && orig != nil {
				v := *f
				v.hdrType, v.hdrCache, v.hdrEnc = orig.hdrType, orig.hdrCache, enc.header
				if enc.suffix == ".br" {
					orig.br = &v
				} else {
					orig.gz = &v
				}
			}
		}
		if path.Base(n) == "index.html" {
			dir := path.Dir(n)
			if dir == "." {
				dir = ""
			}
			b.index[dir] = f
		}
	}
	return b
}

var (
	cacheNoCache   = []string{"no-cache"}
	cacheImmutable = []string{"public, max-age=31536000, immutable"}
	encodings      = []struct {
		suffix string
		header []string
	}{{".br", []string{"br"}}, {".gz", []string{"gzip"}}}
)

func contentType(name string, data []byte) string {
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return http.DetectContentType(data)
}

// checkManifest verifies a sha256sum-format manifest ("<hex>  <name>" per
// line, "*" before the name allowed): every file it lists must exist with
// that hash, and every file of the bundle but the manifest must be listed.
func checkManifest(b *Bundle, name string) error {
	m := b.files[name]
	if m == nil {
		return fmt.Errorf("manifest %q not in the bundle: %w", name, ErrManifest)
	}
	listed := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(m.data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		sum, fname, ok := strings.Cut(text, " ")
		fname = strings.TrimPrefix(strings.TrimLeft(fname, " "), "*")
		fname = strings.TrimPrefix(fname, "./")
		want, err := hex.DecodeString(sum)
		if !ok || err != nil || len(want) != sha256.Size || fname == "" {
			return fmt.Errorf("manifest %q line %d: want \"<sha256 hex>  <name>\": %w", name, line, ErrManifest)
		}
		f := b.files[fname]
		if f == nil {
			return fmt.Errorf("manifest %q lists %q, which is not in the bundle: %w", name, fname, ErrManifest)
		}
		if !bytes.Equal(want, f.sum[:]) {
			return fmt.Errorf("manifest %q: %q has SHA-256 %x, manifest says %s: %w", name, fname, f.sum, sum, ErrManifest)
		}
		listed[fname] = true
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("manifest %q: %v: %w", name, err, ErrManifest)
	}
	for _, n := range b.Names() {
		if n != name && !listed[n] {
			return fmt.Errorf("manifest %q does not list %q: %w", name, n, ErrManifest)
		}
	}
	return nil
}

// SidecarChecksum is an Options.Checksum that reads the expected SHA-256
// from source + ".sha256" (the first word, as sha256sum writes it). Write
// the sidecar before renaming the bundle into place.
func SidecarChecksum(source string) (string, error) {
	b, err := os.ReadFile(source + ".sha256")
	if err != nil {
		return "", err
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return "", fmt.Errorf("%s.sha256 is empty", source)
	}
	return fields[0], nil
}

// parallel calls f(0..n-1) on up to GOMAXPROCS goroutines, which it waits
// for, and returns the error of the lowest index that failed.
func parallel(n int, f func(i int) error) error {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			if err := f(i); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				errs[i] = f(i)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
