package bundle_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/bundle"
	"github.com/handoff-go/handoff/reload"
)

// discard is a minimal ResponseWriter, so handler benchmarks measure the
// handlers, not a recorder.
type discard struct {
	h    http.Header
	code int
	n    int
}

func (w *discard) Header() http.Header         { return w.h }
func (w *discard) WriteHeader(code int)        { w.code = code }
func (w *discard) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return b
}

// benchSite writes the same files for bundle and http.FileServer: a small
// index.html (2 KiB) and a 1 MiB asset.
func benchSite(b *testing.B) (dir string, h *bundle.Handler) {
	dir = b.TempDir()
	require.NoError(b, os.WriteFile(filepath.Join(dir, "index.html"), randomBytes(1, 2<<10), 0o644))
	require.NoError(b, os.MkdirAll(filepath.Join(dir, "assets"), 0o755))
	require.NoError(b, os.WriteFile(filepath.Join(dir, "assets", "big-5d41402a.js"), randomBytes(2, 1<<20), 0o644))
	h = bundle.New(dir, bundle.Options{})
	b.Cleanup(func() { assert.NoError(b, h.Close()) })
	require.NoError(b, h.Reload(context.Background()))
	return dir, h
}

var benchFiles = []struct{ name, path string }{
	{"small", "/"},
	{"1MiB", "/assets/big-5d41402a.js"},
}

// BenchmarkServeHandler calls each handler directly.
func BenchmarkServeHandler(b *testing.B) {
	dir, h := benchSite(b)
	fs := http.FileServer(http.Dir(dir))
	for _, f := range benchFiles {
		for _, s := range []struct {
			name string
			h    http.Handler
		}{{"bundle", h}, {"FileServer", fs}} {
			b.Run(f.name+"/"+s.name, func(b *testing.B) {
				r := httptest.NewRequest(http.MethodGet, f.path, nil)
				w := &discard{h: http.Header{}}
				b.ReportAllocs()
				for b.Loop() {
					clear(w.h)
					w.n = 0
					s.h.ServeHTTP(w, r)
				}
				require.True(b, w.code == 0 || w.code == 200, "status %d", w.code)
				require.NotZero(b, w.n)
				b.SetBytes(int64(w.n))
			})
		}
	}
}

// BenchmarkServeHTTP goes through a real server on 127.0.0.1 and a
// keep-alive client: where FileServer can use sendfile.
func BenchmarkServeHTTP(b *testing.B) {
	dir, h := benchSite(b)
	fs := http.FileServer(http.Dir(dir))
	for _, f := range benchFiles {
		for _, s := range []struct {
			name string
			h    http.Handler
		}{{"bundle", h}, {"FileServer", fs}} {
			b.Run(f.name+"/"+s.name, func(b *testing.B) {
				srv := httptest.NewServer(s.h)
				defer srv.Close()
				tr := &http.Transport{}
				defer tr.CloseIdleConnections()
				c := &http.Client{Transport: tr}
				url := srv.URL + f.path
				b.ReportAllocs()
				var n int64
				for b.Loop() {
					resp, err := c.Get(url)
					require.NoError(b, err)
					n, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					require.Equal(b, 200, resp.StatusCode)
				}
				b.SetBytes(n)
			})
		}
	}
}

// BenchmarkLoadAndSwap10MB measures a whole swap of a 10 MB bundle of
// 1,000 files: read, check, hash, index, swap. Each iteration alternates
// between two versions, so every one is a real swap.
func BenchmarkLoadAndSwap10MB(b *testing.B) {
	dir := b.TempDir()
	versions := [2]map[string]string{{}, {}}
	for v := range versions {
		for i := range 1000 {
			versions[v][fmt.Sprintf("assets/f%04d-%08x.js", i, v*1000+i)] = string(randomBytes(uint64(v*1000+i), 10_000))
		}
		versions[v]["index.html"] = fmt.Sprintf("<html>v%d</html>", v)
	}
	for v, files := range versions {
		writeTree(b, filepath.Join(dir, fmt.Sprint("tree", v)), files)
		writeAtomic(b, filepath.Join(dir, fmt.Sprint("b", v, ".zip")), zipBytes(b, sortedEntries(files)))
		writeAtomic(b, filepath.Join(dir, fmt.Sprint("b", v, ".tar.gz")), tarGzBytes(b, sortedEntries(files)))
	}
	for _, kind := range []struct{ name, pattern string }{
		{"dir", "tree%d"}, {"zip", "b%d.zip"}, {"tar.gz", "b%d.tar.gz"},
	} {
		b.Run(kind.name, func(b *testing.B) {
			link := filepath.Join(b.TempDir(), "live")
			deploy(b, link, filepath.Join(dir, fmt.Sprintf(kind.pattern, 1)))
			h := bundle.New(link, bundle.Options{Retain: -1, Grace: -1})
			defer func() { assert.NoError(b, h.Close()) }()
			i := 0
			cpu0 := cpuTime()
			for b.Loop() {
				deploy(b, link, filepath.Join(dir, fmt.Sprintf(kind.pattern, i%2)))
				i++
				require.NoError(b, h.Reload(context.Background()))
				require.Equal(b, uint64(i), h.Value().Current().Seq)
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/op")
			b.SetBytes(10_000_000)
		})
	}
}

// BenchmarkAcquireRelease is the read path every request takes.
func BenchmarkAcquireRelease(b *testing.B) {
	v := reload.New(reload.Options[*bundle.Bundle]{})
	defer v.Close()
	_, _ = v.Swap(&bundle.Bundle{}, reload.Info{})
	b.ReportAllocs()
	for b.Loop() {
		l, _ := v.Acquire()
		_ = l.Value()
		l.Release()
	}
}
