//go:build unix

package main

import (
	"archive/zip"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func writeZip(t *testing.T, path, index string) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, data := range map[string]string{
		"index.html":                index,
		"assets/app-3f2a9c1b.js":    "console.log(1)",
		"assets/style-8d1e4c2a.css": "body{}",
	} {
		f, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.Write([]byte(data))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	// The deploy step: write next to it, rename into place.
	if err := os.WriteFile(path+".new", buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// serve runs the example and returns its base URL.
func serve(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), io.Discard, func(a string) { addrc <- a })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case a := <-addrc:
		return "http://" + a
	case err := <-errc:
		t.Fatalf("run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not serving after 20s")
	}
	return ""
}

func body(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// eventually polls url until its body contains want (bounded).
func eventually(t *testing.T, url, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(body(t, url), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never served %q", url, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServesSampleSite(t *testing.T) {
	url := serve(t, "-bundle", "site")
	if got := body(t, url+"/"); !strings.Contains(got, "bundle v1") {
		t.Fatalf("index: %q", got)
	}
	if got := body(t, url+"/some/client/route"); !strings.Contains(got, "bundle v1") {
		t.Fatalf("SPA fallback: %q", got)
	}
	if got := body(t, url+"/-/bundle"); !strings.Contains(got, `"Current":true`) {
		t.Fatalf("history: %q", got)
	}
}

func TestSwapsOnFileChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.zip")
	writeZip(t, path, "<h1>one</h1>")
	url := serve(t, "-bundle", path, "-debounce", "100ms")
	eventually(t, url+"/", "one")
	writeZip(t, path, "<h1>two</h1>")
	eventually(t, url+"/", "two")
}

func TestSwapsOnSIGUSR2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.zip")
	writeZip(t, path, "<h1>one</h1>")
	// A debounce far longer than the test: only SIGUSR2 can load "two".
	url := serve(t, "-bundle", path, "-debounce", "1h")
	writeZip(t, path, "<h1>two</h1>")
	if got := body(t, url+"/"); !strings.Contains(got, "one") {
		t.Fatalf("swapped before SIGUSR2: %q", got)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	eventually(t, url+"/", "two")
}
