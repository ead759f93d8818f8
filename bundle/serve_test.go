package bundle_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/bundle"
	"github.com/handoff-go/handoff/reload"
)

func get(t *testing.T, h http.Handler, target string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	return do(t, h, http.MethodGet, target, hdr...)
}

func do(t *testing.T, h http.Handler, method, target string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

var site = map[string]string{
	"index.html":                "<html>home</html>",
	"docs/index.html":           "<html>docs</html>",
	"assets/index-BHr7Ra_x.js":  strings.Repeat("console.log('app');\n", 200),
	"assets/style.3f2a9c1b.css": "body{}",
	"favicon.ico":               "\x00\x00\x01\x00icon",
	"robots.txt":                "User-agent: *",
	"data.unknownext":           "<html><body>sniffed</body></html>",
}

func siteWithGzip(t *testing.T) map[string]string {
	files := map[string]string{}
	for k, v := range site {
		files[k] = v
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write([]byte(site["assets/index-BHr7Ra_x.js"]))
	require.NoError(t, zw.Close())
	files["assets/index-BHr7Ra_x.js.gz"] = buf.String()
	files["assets/index-BHr7Ra_x.js.br"] = "pretend-brotli"
	return files
}

func loadedHandler(t *testing.T, files map[string]string, opts bundle.Options) *bundle.Handler {
	t.Helper()
	dir := t.TempDir()
	writeTree(t, dir, files)
	h := bundle.New(dir, opts)
	t.Cleanup(func() { assert.NoError(t, h.Close()) })
	require.NoError(t, h.Reload(context.Background()))
	return h
}

func TestServeBasics(t *testing.T) {
	h := loadedHandler(t, siteWithGzip(t), bundle.Options{})

	w := get(t, h, "/")
	assert.Equal(t, 200, w.Code)
	assert.Equal(t, "<html>home</html>", w.Body.String())
	assert.Equal(t, "text/html; charset=utf-8", w.Header().Get("Content-Type"))
	assert.Equal(t, "no-cache", w.Header().Get("Cache-Control"))
	etag := w.Header().Get("ETag")
	assert.True(t, strings.HasPrefix(etag, `"`) && len(etag) > 10, "etag %q", etag)

	w = get(t, h, "/", "If-None-Match", `"other", W/`+etag)
	assert.Equal(t, 304, w.Code)
	assert.Equal(t, 0, w.Body.Len())

	w = get(t, h, "/docs/")
	assert.Equal(t, "<html>docs</html>", w.Body.String())
	w = get(t, h, "/docs?x=1")
	assert.Equal(t, http.StatusMovedPermanently, w.Code)
	assert.Equal(t, "/docs/?x=1", w.Header().Get("Location"))

	w = get(t, h, "/assets/style.3f2a9c1b.css")
	assert.Equal(t, "public, max-age=31536000, immutable", w.Header().Get("Cache-Control"))
	assert.Equal(t, "text/css; charset=utf-8", w.Header().Get("Content-Type"))
	assert.Equal(t, "6", w.Header().Get("Content-Length"))

	w = get(t, h, "/robots.txt")
	assert.Equal(t, "no-cache", w.Header().Get("Cache-Control"))
	assert.Equal(t, "text/plain; charset=utf-8", w.Header().Get("Content-Type"))
	w = get(t, h, "/data.unknownext")
	assert.Equal(t, "text/html; charset=utf-8", w.Header().Get("Content-Type"), "sniffed")

	w = get(t, h, "/missing")
	assert.Equal(t, 404, w.Code)
	w = get(t, h, "/../../etc/passwd")
	assert.Equal(t, 404, w.Code)

	w = do(t, h, http.MethodPost, "/")
	assert.Equal(t, 405, w.Code)
	assert.Equal(t, "GET, HEAD", w.Header().Get("Allow"))

	w = do(t, h, http.MethodHead, "/robots.txt")
	assert.Equal(t, 200, w.Code)
	assert.Equal(t, 0, w.Body.Len())
	assert.Equal(t, "13", w.Header().Get("Content-Length"))
}

func TestServePrecompressed(t *testing.T) {
	h := loadedHandler(t, siteWithGzip(t), bundle.Options{})
	js := "/assets/index-BHr7Ra_x.js"

	plain := get(t, h, js)
	assert.Equal(t, site["assets/index-BHr7Ra_x.js"], plain.Body.String())
	assert.Equal(t, "", plain.Header().Get("Content-Encoding"))
	assert.Equal(t, "Accept-Encoding", plain.Header().Get("Vary"))

	gz := get(t, h, js, "Accept-Encoding", "gzip, deflate")
	assert.Equal(t, "gzip", gz.Header().Get("Content-Encoding"))
	assert.Equal(t, "text/javascript; charset=utf-8", gz.Header().Get("Content-Type"))
	assert.True(t, gz.Header().Get("ETag") != plain.Header().Get("ETag"), "variant ETag differs")
	zr, err := gzip.NewReader(gz.Body)
	require.NoError(t, err)
	body, err := io.ReadAll(zr)
	require.NoError(t, err)
	assert.Equal(t, site["assets/index-BHr7Ra_x.js"], string(body))

	br := get(t, h, js, "Accept-Encoding", "gzip, br")
	assert.Equal(t, "br", br.Header().Get("Content-Encoding"))
	assert.Equal(t, "pretend-brotli", br.Body.String())
	assert.Equal(t, "public, max-age=31536000, immutable", br.Header().Get("Cache-Control"))

	noBr := get(t, h, js, "Accept-Encoding", "br;q=0, gzip;q=0.5")
	assert.Equal(t, "gzip", noBr.Header().Get("Content-Encoding"))
	none := get(t, h, js, "Accept-Encoding", "*;q=0")
	assert.Equal(t, "", none.Header().Get("Content-Encoding"))
	star := get(t, h, js, "Accept-Encoding", "*")
	assert.Equal(t, "br", star.Header().Get("Content-Encoding"))
}

func TestServeRange(t *testing.T) {
	h := loadedHandler(t, site, bundle.Options{})
	w := get(t, h, "/robots.txt", "Range", "bytes=0-9")
	assert.Equal(t, http.StatusPartialContent, w.Code)
	assert.Equal(t, "User-agen", w.Body.String()[:9])
	assert.Equal(t, "bytes 0-9/13", w.Header().Get("Content-Range"))

	etag := get(t, h, "/robots.txt").Header().Get("ETag")
	w = get(t, h, "/robots.txt", "Range", "bytes=5-", "If-Range", etag)
	assert.Equal(t, http.StatusPartialContent, w.Code)
	assert.Equal(t, "agent: *", w.Body.String())
	w = get(t, h, "/robots.txt", "Range", "bytes=5-", "If-Range", `"stale"`)
	assert.Equal(t, 200, w.Code)
	w = get(t, h, "/robots.txt", "Range", "bytes=100-")
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, w.Code)
}

func TestServeSPAFallback(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, filepath.Join(dir, "site"), site)
	h, link := handlerAt(t, filepath.Join(dir, "site"), bundle.Options{Fallback: "index.html"})
	w := get(t, h, "/settings/profile")
	assert.Equal(t, 200, w.Code)
	assert.Equal(t, "<html>home</html>", w.Body.String())
	assert.Equal(t, "no-cache", w.Header().Get("Cache-Control"))
	w = get(t, h, "/assets/gone-12345678.js")
	assert.Equal(t, 404, w.Code, "missing asset must not get HTML")

	// The fallback document must be in every bundle.
	writeTree(t, filepath.Join(dir, "app"), map[string]string{"app.js": "x"})
	deploy(t, link, filepath.Join(dir, "app"))
	err := h.Reload(context.Background())
	assert.ErrorIs(t, err, bundle.ErrFormat)
	assert.ErrorContains(t, err, `fallback document "index.html" missing`)
}

func TestServeBeforeLoadAndAfterClose(t *testing.T) {
	dir := t.TempDir()
	h := bundle.New(dir, bundle.Options{})
	assert.Equal(t, 503, get(t, h, "/").Code)
	writeTree(t, dir, site)
	require.NoError(t, h.Reload(context.Background()))
	assert.Equal(t, 200, get(t, h, "/").Code)
	require.NoError(t, h.Close())
	require.NoError(t, h.Close(), "idempotent")
	assert.Equal(t, 503, get(t, h, "/").Code)
	assert.ErrorIs(t, h.Reload(context.Background()), reload.ErrClosed)
	assert.ErrorIs(t, h.Watch(context.Background()), reload.ErrClosed)
}

func TestSameContentAnyPackagingSameID(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, filepath.Join(dir, "tree"), site)
	writeAtomic(t, filepath.Join(dir, "b.zip"), zipBytes(t, sortedEntries(site)))
	writeAtomic(t, filepath.Join(dir, "b.tar.gz"), tarGzBytes(t, sortedEntries(site)))
	var ids []string
	for _, p := range []string{"tree", "b.zip", "b.tar.gz"} {
		b, err := bundle.Load(context.Background(), filepath.Join(dir, p), bundle.Options{})
		require.NoError(t, err, p)
		ids = append(ids, b.ID())
		assert.Equal(t, len(site), b.Len())
	}
	assert.Equal(t, ids[0], ids[1])
	assert.Equal(t, ids[0], ids[2])

	h, link := handlerAt(t, filepath.Join(dir, "tree"), bundle.Options{})
	v1 := h.Value().Current()
	deploy(t, link, filepath.Join(dir, "b.zip"))
	require.NoError(t, h.Reload(context.Background()))
	assert.Same(t, v1, h.Value().Current(), "unchanged content: no swap")
}

func TestHashedName(t *testing.T) {
	for name, want := range map[string]bool{
		"assets/index-BHr7Ra_x.js":      true,
		"main.3f2a9c1b.js":              true,
		"chunk-ABCD1234.js":             true,
		"vendor.chunk.3f2a9c1b.js.gz":   true,
		"app.8f3c2d1ab4e5f6a7b8c9.css":  true,
		"index-BHr7Ra_x.js.map":         true,
		"index.html":                    false,
		"app.js":                        false,
		"bootstrap-icons.woff2":         false,
		"jquery-3.6.0.min.js":           false,
		"roboto-v30-latin-regular.woff": false,
		"favicon.ico":                   false,
		"12345678.js":                   false,
	} {
		assert.Equal(t, want, bundle.HashedName(name), name)
	}
}
