package bundle_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/bundle"
)

// frontEnd returns version k of a small front end: an index.html naming
// three content-hashed assets, each carrying "v=k", and a favicon that never
// changes.
func frontEnd(k int) map[string]string {
	files := map[string]string{"favicon.ico": "icon"}
	var refs string
	for _, a := range []struct{ stem, ext, tag string }{
		{"app", ".js", `<script src="%s"></script>`},
		{"vendor", ".js", `<script src="%s"></script>`},
		{"style", ".css", `<link rel="stylesheet" href="%s">`},
	} {
		body := fmt.Sprintf("/* %s v=%d */ %s", a.stem, k, string(make([]byte, 512)))
		sum := sha256.Sum256([]byte(body))
		name := fmt.Sprintf("assets/%s-%x%s", a.stem, sum[:4], a.ext)
		files[name] = body
		refs += fmt.Sprintf(a.tag, "/"+name)
	}
	files["index.html"] = fmt.Sprintf(`<!doctype html><meta name="version" content="%d">%s`, k, refs)
	return files
}

var (
	versionRE = regexp.MustCompile(`name="version" content="(\d+)"`)
	assetRE   = regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`)
	bodyVerRE = regexp.MustCompile(`v=(\d+) \*/`)
)

// TestSwapUnderLoad is acceptance point a: 16 concurrent clients each load
// index.html and then every asset it names, while the bundle is swapped 100
// times, cycling through a directory, a zip and a tar.gz. Every fourth page
// load waits for the next swap before fetching its assets, so that the
// grace period is exercised on every swap. Counted: failed requests, pages
// whose assets come from another version than their index.html, and
// missing assets.
func TestSwapUnderLoad(t *testing.T) {
	const (
		clients = 16
		swaps   = 100
	)
	dir := t.TempDir()
	h := bundle.New(bundle.Options{})
	defer h.Close()
	paths := []string{filepath.Join(dir, "release"), filepath.Join(dir, "bundle.zip"), filepath.Join(dir, "bundle.tar.gz")}
	write := func(k int) string {
		files := frontEnd(k)
		switch k % 3 {
		case 0:
			p := fmt.Sprintf("%s-%d", paths[0], k)
			writeTree(t, p, files)
			return p
		case 1:
			writeAtomic(t, paths[1], zipBytes(t, sortedEntries(files), true))
			return paths[1]
		default:
			writeAtomic(t, paths[2], tarGzBytes(t, sortedEntries(files), true))
			return paths[2]
		}
	}
	_, err := h.Load(context.Background(), write(1))
	require.NoError(t, err)

	srv := httptest.NewServer(h) // 127.0.0.1
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	var (
		pages, requests, failed, mixed    atomic.Int64
		missingPrev, missingOlder, viaOld atomic.Int64
		swapped                           = make(chan struct{}) // closed and replaced on each swap
		swapMu                            sync.Mutex
		done                              atomic.Bool
		pageDone                          = make(chan struct{}, 1)
	)
	nextSwap := func() <-chan struct{} {
		swapMu.Lock()
		defer swapMu.Unlock()
		return swapped
	}
	fetch := func(url string) (int, string, error) {
		requests.Add(1)
		resp, err := client.Get(srv.URL + url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	deadline := time.Now().Add(60 * time.Second)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := 0; i < 100_000 && !done.Load() && time.Now().Before(deadline); i++ {
				waitForSwap := nextSwap()
				code, page, err := fetch("/index.html")
				if err != nil || code != 200 {
					failed.Add(1)
					t.Errorf("client %d: index.html: %d %v", c, code, err)
					continue
				}
				m := versionRE.FindStringSubmatch(page)
				if m == nil {
					failed.Add(1)
					continue
				}
				k, _ := strconv.Atoi(m[1])
				if i%4 == 3 {
					select { // a slow client: the bundle changes under it
					case <-waitForSwap:
					case <-time.After(10 * time.Second):
					}
				}
				for _, a := range assetRE.FindAllStringSubmatch(page, -1) {
					cur := int(h.Value().Current().Seq)
					code, body, err := fetch(a[1])
					switch {
					case err != nil:
						failed.Add(1)
						t.Errorf("client %d: %s: %v", c, a[1], err)
					case code == http.StatusNotFound && k >= cur-1:
						missingPrev.Add(1)
						t.Errorf("client %d: %s of version %d missing (current %d)", c, a[1], k, cur)
					case code == http.StatusNotFound:
						missingOlder.Add(1)
					case code != 200:
						failed.Add(1)
						t.Errorf("client %d: %s: status %d", c, a[1], code)
					default:
						if bm := bodyVerRE.FindStringSubmatch(body); bm == nil || bm[1] != m[1] {
							mixed.Add(1)
							t.Errorf("client %d: page v%d got %s from another version", c, k, a[1])
						}
						if k < cur {
							viaOld.Add(1)
						}
					}
				}
				pages.Add(1)
				select {
				case pageDone <- struct{}{}:
				default:
				}
			}
		})
	}

	start := time.Now()
	lastSwapPages := int64(0)
	var writeTime, loadTime time.Duration
	for k := 2; k <= swaps+1; k++ {
		t0 := time.Now()
		p := write(k)
		writeTime += time.Since(t0)
		// Let the clients load some pages in between swaps (each can load
		// at least one more page after a swap before it waits for the next).
		for pages.Load() < lastSwapPages+clients/2 && time.Now().Before(deadline) {
			select {
			case <-pageDone:
			case <-time.After(time.Until(deadline)):
			}
		}
		t0 = time.Now()
		ver, err := h.Load(context.Background(), p)
		require.NoError(t, err)
		require.Equal(t, uint64(k), ver.Seq)
		loadTime += time.Since(t0)
		lastSwapPages = pages.Load()
		swapMu.Lock()
		close(swapped)
		swapped = make(chan struct{})
		swapMu.Unlock()
		if k%3 == 0 {
			require.NoError(t, os.RemoveAll(fmt.Sprintf("%s-%d", paths[0], k-3))) // old release dirs go away
		}
	}
	took := time.Since(start)
	t.Logf("writing bundles %v, loading them %v", writeTime.Round(time.Millisecond), loadTime.Round(time.Millisecond))
	done.Store(true)
	wg.Wait()

	t.Logf("%d swaps (dir, zip, tar.gz) in %v; %d clients; %d page loads, %d requests; "+
		"failed %d, mixed %d, missing (previous version) %d, missing (older than Retain) %d; assets served from a replaced bundle %d",
		swaps, took.Round(time.Millisecond), clients, pages.Load(), requests.Load(),
		failed.Load(), mixed.Load(), missingPrev.Load(), missingOlder.Load(), viaOld.Load())
	assert.Equal(t, int64(0), failed.Load(), "failed requests")
	assert.Equal(t, int64(0), mixed.Load(), "mixed-version page loads")
	assert.Equal(t, int64(0), missingPrev.Load(), "missing assets")
	assert.True(t, viaOld.Load() > 0, "the grace path was never exercised")
	assert.True(t, pages.Load() >= swaps*clients/2, "too few page loads: %d", pages.Load())
}

func TestGracePeriodAndRetain(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	h := bundle.New(bundle.Options{Grace: time.Minute, Retain: 2})
	defer h.Close()
	bundle.SetClock(h, func() time.Time { return now })
	load := func(k int) {
		p := filepath.Join(dir, strconv.Itoa(k))
		writeTree(t, p, frontEnd(k))
		_, err := h.Load(context.Background(), p)
		require.NoError(t, err)
	}
	asset := func(k int) string { return assetRE.FindStringSubmatch(frontEnd(k)["index.html"])[1] }

	load(1)
	load(2)
	assert.Equal(t, 200, get(t, h, asset(1)).Code, "previous bundle's asset within grace")
	assert.Equal(t, 200, get(t, h, asset(2)).Code)
	load(3)
	load(4)
	assert.Equal(t, 404, get(t, h, asset(1)).Code, "beyond Retain")
	assert.Equal(t, 200, get(t, h, asset(2)).Code)
	now = now.Add(2 * time.Minute) // ReplacedAt uses the real clock
	assert.Equal(t, 404, get(t, h, asset(3)).Code, "after the grace period")
	assert.Equal(t, 200, get(t, h, asset(4)).Code, "current")

	// Rollback brings version 3 back at once.
	ver, err := h.Value().Rollback()
	require.NoError(t, err)
	assert.Equal(t, uint64(3), ver.Seq)
	assert.Equal(t, frontEnd(3)["index.html"], get(t, h, "/").Body.String())
}
