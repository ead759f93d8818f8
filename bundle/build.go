package bundle

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"mime"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
)

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
