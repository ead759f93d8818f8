package bundle_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

	h := bundle.New(bundle.Options{Retain: -1})
	defer h.Close()
	if _, err := h.Load(context.Background(), filepath.Join(dir, "v1")); err != nil {
		t.Fatal(err)
	}
	if got := spilled(t) - before; got != 1 {
		t.Fatalf("%d disk copies, want 1", got)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for range 3 {
		resp, err := http.Get(srv.URL + "/big.bin")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(body, big) {
			t.Fatalf("body: %d bytes, equal %v, err %v", len(body), bytes.Equal(body, big), err)
		}
	}
	req, _ := http.NewRequest("GET", srv.URL+"/big.bin", nil)
	req.Header.Set("Range", "bytes=100-199")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, big[100:200]) {
		t.Errorf("range: %s, %d bytes", resp.Status, len(part))
	}
	srv.CloseClientConnections()

	if _, err := h.Load(context.Background(), filepath.Join(dir, "v2")); err != nil {
		t.Fatal(err)
	}
	if got := spilled(t) - before; got != 0 {
		t.Errorf("%d disk copies left after the bundle was replaced", got)
	}
}
