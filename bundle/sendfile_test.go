//go:build linux

package bundle_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/bundle"
)

// spilled counts this process's open disk copies of large files.
func spilled(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd here")
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.Contains(l, "handoff-bundle-") {
			n++
		}
	}
	return n
}

// TestLargeFileFromDisk: a large file is served whole, byte for byte, from
// its disk copy (sendfile) over a real connection, also with a range, and
// the copy is closed once its bundle is replaced and released.
func TestLargeFileFromDisk(t *testing.T) {
	dir := t.TempDir()
	big := randomBytes(7, 300<<10)
	writeTree(t, filepath.Join(dir, "v1"), map[string]string{"index.html": "v1", "big.bin": string(big)})
	writeTree(t, filepath.Join(dir, "v2"), map[string]string{"index.html": "v2"})
	before := spilled(t)

	h, link := handlerAt(t, filepath.Join(dir, "v1"), bundle.Options{Retain: -1, Grace: -1})
	require.Equal(t, 1, spilled(t)-before, "disk copies")
	srv := httptest.NewServer(h)
	defer srv.Close()
	for range 3 {
		resp, err := http.Get(srv.URL + "/big.bin")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.True(t, bytes.Equal(body, big), "body: %d bytes", len(body))
	}
	req, err := http.NewRequest("GET", srv.URL+"/big.bin", nil)
	require.NoError(t, err)
	req.Header.Set("Range", "bytes=100-199")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	part, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.True(t, bytes.Equal(part, big[100:200]), "range: %d bytes", len(part))
	srv.CloseClientConnections()

	swapTo(t, h, link, filepath.Join(dir, "v2"))
	assert.Zero(t, spilled(t)-before, "disk copies left after the bundle was replaced")
}
