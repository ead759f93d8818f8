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
	"github.com/handoff-go/handoff/reload"
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

// asset returns the path of the first asset of version k.
func asset(k int) string { return assetRE.FindStringSubmatch(frontEnd(k)["index.html"])[1] }

var (
	versionRE = regexp.MustCompile(`name="version" content="(\d+)"`)
	assetRE   = regexp.MustCompile(`(?:src|href)="(/assets/[^"]+)"`)
	bodyVerRE = regexp.MustCompile(`v=(\d+) \*/`)
)

// pageLoads is the client side of TestSwapUnderLoad: browsers that load
// index.html and then every asset it names, and count what went wrong.
type pageLoads struct {
	t      *testing.T
	h      *bundle.Handler
	url    string
	client *http.Client

	pages, requests, failed, mixed    atomic.Int64
	missingPrev, missingOlder, viaOld atomic.Int64
	pageDone                          chan struct{} // a page load ended

	mu      sync.Mutex
	swapped chan struct{} // closed and replaced on each swap
}

func (p *pageLoads) nextSwap() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.swapped
}

// swappedNow wakes the clients that wait for a swap.
func (p *pageLoads) swappedNow() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.swapped)
	p.swapped = make(chan struct{})
}

func (p *pageLoads) fetch(url string) (int, string, error) {
	p.requests.Add(1)
	resp, err := p.client.Get(p.url + url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// page loads index.html, waits for the next swap when slow is set (the
// bundle changes under the page), then loads its assets.
func (p *pageLoads) page(c int, slow bool) {
	waitForSwap := p.nextSwap()
	code, page, err := p.fetch("/index.html")
	m := versionRE.FindStringSubmatch(page)
	if err != nil || code != 200 || m == nil {
		p.failed.Add(1)
		assert.Fail(p.t, "index.html", "client %d: %d %v", c, code, err)
		return
	}
	k, _ := strconv.Atoi(m[1])
	if slow {
		select {
		case <-waitForSwap:
		case <-time.After(10 * time.Second):
		}
	}
	for _, a := range assetRE.FindAllStringSubmatch(page, -1) {
		cur := int(p.h.Value().Current().Seq)
		code, body, err := p.fetch(a[1])
		switch {
		case err != nil:
			p.failed.Add(1)
			assert.Fail(p.t, "asset", "client %d: %s: %v", c, a[1], err)
		case code == http.StatusNotFound && k >= cur-1:
			p.missingPrev.Add(1)
			assert.Fail(p.t, "asset missing", "client %d: %s of version %d (current %d)", c, a[1], k, cur)
		case code == http.StatusNotFound:
			p.missingOlder.Add(1)
		case code != 200:
			p.failed.Add(1)
			assert.Fail(p.t, "asset", "client %d: %s: status %d", c, a[1], code)
		default:
			if bm := bodyVerRE.FindStringSubmatch(body); bm == nil || bm[1] != m[1] {
				p.mixed.Add(1)
				assert.Fail(p.t, "mixed versions", "client %d: page v%d got %s from another version", c, k, a[1])
			}
			if k < cur {
				p.viaOld.Add(1)
			}
		}
	}
	p.pages.Add(1)
	select {
	case p.pageDone <- struct{}{}:
	default:
	}
}

// TestSwapUnderLoad is acceptance point a: 16 concurrent clients each load
// index.html and then every asset it names, while the bundle is swapped 100
// times, cycling through a directory, a zip and a tar.gz deployed by a
// symlink swap. Every fourth page load waits for the next swap before
// fetching its assets, so that the grace period is exercised on every swap.
// Counted: failed requests, pages whose assets come from another version
// than their index.html, and missing assets.
func TestSwapUnderLoad(t *testing.T) {
	const (
		clients = 16
		swaps   = 100
	)
	dir := t.TempDir()
	write := func(k int) string {
		files := frontEnd(k)
		switch k % 3 {
		case 0:
			p := filepath.Join(dir, fmt.Sprint("release-", k))
			writeTree(t, p, files)
			return p
		case 1:
			p := filepath.Join(dir, "bundle.zip")
			writeAtomic(t, p, zipBytes(t, sortedEntries(files), true))
			return p
		default:
			p := filepath.Join(dir, "bundle.tar.gz")
			writeAtomic(t, p, tarGzBytes(t, sortedEntries(files), true))
			return p
		}
	}
	h, link := handlerAt(t, write(1), bundle.Options{})
	srv := httptest.NewServer(h) // 127.0.0.1
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	p := &pageLoads{
		t: t, h: h, url: srv.URL, client: &http.Client{Transport: tr, Timeout: 20 * time.Second},
		pageDone: make(chan struct{}, 1), swapped: make(chan struct{}),
	}

	deadline := time.Now().Add(60 * time.Second)
	var done atomic.Bool
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := 0; i < 100_000 && !done.Load() && time.Now().Before(deadline); i++ {
				p.page(c, i%4 == 3)
			}
		})
	}
	start := time.Now()
	lastSwapPages := int64(0)
	for k := 2; k <= swaps+1; k++ {
		target := write(k)
		// Let the clients load some pages in between swaps (each can load
		// at least one more page after a swap before it waits for the next).
		for p.pages.Load() < lastSwapPages+clients/2 && time.Now().Before(deadline) {
			select {
			case <-p.pageDone:
			case <-time.After(time.Until(deadline)):
			}
		}
		require.Equal(t, uint64(k), swapTo(t, h, link, target))
		lastSwapPages = p.pages.Load()
		p.swappedNow()
		if k%3 == 0 && k > 3 {
			require.NoError(t, os.RemoveAll(filepath.Join(dir, fmt.Sprint("release-", k-3)))) // old release dirs go away
		}
	}
	took := time.Since(start)
	done.Store(true)
	wg.Wait()

	t.Logf("%d swaps (dir, zip, tar.gz) in %v; %d clients; %d page loads, %d requests; "+
		"failed %d, mixed %d, missing (previous version) %d, missing (older) %d; assets served from a replaced bundle %d",
		swaps, took.Round(time.Millisecond), clients, p.pages.Load(), p.requests.Load(),
		p.failed.Load(), p.mixed.Load(), p.missingPrev.Load(), p.missingOlder.Load(), p.viaOld.Load())
	assert.Zero(t, p.failed.Load(), "failed requests")
	assert.Zero(t, p.mixed.Load(), "mixed-version page loads")
	assert.Zero(t, p.missingPrev.Load(), "missing assets")
	assert.Positive(t, p.viaOld.Load(), "the grace path was never exercised")
	assert.GreaterOrEqual(t, p.pages.Load(), int64(swaps*clients/2), "too few page loads")
}

// TestGraceKeepsFastSwappedVersions: a page's assets stay servable for
// Grace however many swaps follow, well past Retain; after Grace they are
// gone.
func TestGraceKeepsFastSwappedVersions(t *testing.T) {
	dir := t.TempDir()
	release := func(k int) string {
		p := filepath.Join(dir, strconv.Itoa(k))
		writeTree(t, p, frontEnd(k))
		return p
	}
	now := time.Now()
	h, link := handlerAt(t, release(1), bundle.Options{}) // DefaultGrace, DefaultRetain
	bundle.SetClock(h, func() time.Time { return now })
	page := get(t, h, "/").Body.String() // a browser loads version 1
	const swaps = 3 * bundle.DefaultRetain
	for k := 2; k <= swaps+1; k++ { // the fastest deploys: one after the other
		swapTo(t, h, link, release(k))
	}
	for _, a := range assetRE.FindAllStringSubmatch(page, -1) {
		w := get(t, h, a[1])
		assert.Equal(t, 200, w.Code, "%s of version 1, %d swaps ago", a[1], swaps)
		assert.Contains(t, w.Body.String(), "v=1 */")
	}

	now = now.Add(bundle.DefaultGrace + time.Second)
	assert.Equal(t, 404, get(t, h, asset(1)).Code, "after Grace")
	assert.Equal(t, 404, get(t, h, asset(swaps)).Code, "after Grace")
	assert.Equal(t, 200, get(t, h, asset(swaps+1)).Code, "current")
}

// TestRetainWithoutGrace: with no Grace, Retain keeps bundles for Rollback
// only; their files are not served.
func TestRetainWithoutGrace(t *testing.T) {
	dir := t.TempDir()
	release := func(k int) string {
		p := filepath.Join(dir, strconv.Itoa(k))
		writeTree(t, p, frontEnd(k))
		return p
	}
	h, link := handlerAt(t, release(1), bundle.Options{Grace: -1, Retain: 2})
	for k := 2; k <= 4; k++ {
		swapTo(t, h, link, release(k))
	}
	assert.Equal(t, 404, get(t, h, asset(3)).Code, "no Grace: replaced bundles are not served")

	// Rollback brings version 3 back at once, then 2; 1 is beyond Retain.
	ver, err := h.Value().Rollback()
	require.NoError(t, err)
	assert.Equal(t, uint64(3), ver.Seq)
	assert.Equal(t, frontEnd(3)["index.html"], get(t, h, "/").Body.String())
	ver, err = h.Value().RollbackTo(2)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), ver.Seq)
	_, err = h.Value().RollbackTo(1)
	assert.ErrorIs(t, err, reload.ErrNotRetained)
}

// TestReloadNeverOverlaps: SIGUSR2-style reloads from many goroutines,
// while Watch runs, end in one swap per content change.
func TestReloadNeverOverlaps(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, filepath.Join(dir, "1"), frontEnd(1))
	writeTree(t, filepath.Join(dir, "2"), frontEnd(2))
	var swaps atomic.Int64
	h, link := handlerAt(t, filepath.Join(dir, "1"), bundle.Options{
		Debounce: time.Hour, // the watcher sees the change but never loads it
		OnEvent: func(e reload.Event) {
			if e.Kind == reload.EventSwap {
				swaps.Add(1)
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { assert.ErrorIs(t, h.Watch(ctx), context.Canceled) })
	defer wg.Wait()
	defer cancel()

	deploy(t, link, filepath.Join(dir, "2"))
	var reloads sync.WaitGroup
	for range 8 {
		reloads.Go(func() { assert.NoError(t, h.Reload(ctx)) })
	}
	reloads.Wait()
	assert.Equal(t, int64(2), swaps.Load(), "the first load and one swap to version 2")
	assert.Equal(t, uint64(2), h.Value().Current().Seq)
}
