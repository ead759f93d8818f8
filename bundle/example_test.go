package bundle_test

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/handoff-go/handoff/bundle"
	"github.com/handoff-go/handoff/reload"
)

// writeFiles writes files (name to content) under root.
func writeFiles(root string, files map[string]string) {
	for name, data := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// show prints what site answers for a GET of path.
func show(site *bundle.Handler, path string) {
	w := httptest.NewRecorder()
	site.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	fmt.Printf("%s: %d %q %s\n", path, w.Code, w.Header().Get("Cache-Control"), w.Body)
}

// A Handler serves the bundle at its path; Reload swaps in a new version
// (a program passes it to handoff.Options.Reload, for SIGUSR2). Pages
// loaded before the swap still get their hashed assets for Options.Grace.
func Example() {
	dir, err := os.MkdirTemp("", "bundle-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	writeFiles(dir, map[string]string{
		"index.html":             `<script src="/assets/app-1a2b3c4d.js"></script>`,
		"assets/app-1a2b3c4d.js": `console.log("v1")`,
	})

	site := bundle.New(dir, bundle.Options{Fallback: "index.html"})
	defer site.Close()
	if err := site.Reload(context.Background()); err != nil {
		log.Fatal(err) // no bundle, no service
	}
	show(site, "/")
	show(site, "/assets/app-1a2b3c4d.js")
	show(site, "/settings") // a client-side route: the Fallback

	// The next release replaces the script by another one.
	if err := os.Remove(filepath.Join(dir, "assets", "app-1a2b3c4d.js")); err != nil {
		log.Fatal(err)
	}
	writeFiles(dir, map[string]string{
		"index.html":             `<script src="/assets/app-5e6f7a8b.js"></script>`,
		"assets/app-5e6f7a8b.js": `console.log("v2")`,
	})
	if err := site.Reload(context.Background()); err != nil {
		log.Fatal(err)
	}
	show(site, "/")
	show(site, "/assets/app-5e6f7a8b.js")
	show(site, "/assets/app-1a2b3c4d.js") // asked for by a page of version 1
	fmt.Println("version", site.Value().Current().Seq)
	// Output:
	// /: 200 "no-cache" <script src="/assets/app-1a2b3c4d.js"></script>
	// /assets/app-1a2b3c4d.js: 200 "public, max-age=31536000, immutable" console.log("v1")
	// /settings: 200 "no-cache" <script src="/assets/app-1a2b3c4d.js"></script>
	// /: 200 "no-cache" <script src="/assets/app-5e6f7a8b.js"></script>
	// /assets/app-5e6f7a8b.js: 200 "public, max-age=31536000, immutable" console.log("v2")
	// /assets/app-1a2b3c4d.js: 200 "public, max-age=31536000, immutable" console.log("v1")
	// version 2
}

// writeZip writes a zip of files at path the way a deploy should: next to
// it, then renamed into place.
func writeZip(path string, files map[string]string) {
	f, err := os.Create(path + ".new")
	if err != nil {
		log.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for name, data := range files {
		w, err := zw.Create(name)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := w.Write([]byte(data)); err != nil {
			log.Fatal(err)
		}
	}
	if err := errors.Join(zw.Close(), f.Close()); err != nil {
		log.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		log.Fatal(err)
	}
}

// Watch reloads the bundle when it changes on disk: here an archive
// renamed into place. It runs until its context ends.
func ExampleHandler_Watch() {
	dir, err := os.MkdirTemp("", "bundle-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "site.zip")
	writeZip(path, map[string]string{"index.html": "one"})

	swapped := make(chan uint64, 8)
	site := bundle.New(path, bundle.Options{OnEvent: func(e reload.Event) {
		if e.Kind == reload.EventSwap {
			swapped <- e.Seq
		}
	}})
	defer site.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- site.Watch(ctx) }() // it loads first
	wait := func() {
		select {
		case seq := <-swapped:
			fmt.Println("swapped to version", seq)
		case <-time.After(20 * time.Second):
			log.Fatal("no swap")
		}
	}
	wait()
	show(site, "/")

	writeZip(path, map[string]string{"index.html": "two"}) // the deploy
	wait()
	show(site, "/")

	cancel()
	fmt.Println("Watch:", <-done)
	// Output:
	// swapped to version 1
	// /: 200 "no-cache" one
	// swapped to version 2
	// /: 200 "no-cache" two
	// Watch: context canceled
}

// Load reads and checks a bundle without serving it: for a deploy tool
// that refuses a bad bundle before it is renamed into place.
func ExampleLoad() {
	dir, err := os.MkdirTemp("", "bundle-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	writeFiles(filepath.Join(dir, "dist"), map[string]string{
		"index.html":             "<h1>hello</h1>",
		"assets/app-1a2b3c4d.js": "console.log(1)",
	})
	writeZip(filepath.Join(dir, "site.zip"), map[string]string{"../../etc/cron.d/evil": "* * * * * root sh"})

	b, err := bundle.Load(context.Background(), filepath.Join(dir, "dist"), bundle.Options{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(b.Len(), "files:", b.Names())

	_, err = bundle.Load(context.Background(), filepath.Join(dir, "site.zip"), bundle.Options{})
	fmt.Println("unsafe:", errors.Is(err, bundle.ErrUnsafePath))
	// Output:
	// 2 files: [assets/app-1a2b3c4d.js index.html]
	// unsafe: true
}

// A directory bundle refuses a file with other hard links, which may lie
// outside it: anyone who can write the directory could otherwise publish
// any file of the same file system they can link.
func ExampleErrHardLink() {
	dir, err := os.MkdirTemp("", "bundle-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	writeFiles(filepath.Join(dir, "site"), map[string]string{"index.html": "hello"})
	writeFiles(dir, map[string]string{"secret.txt": "not for the web"})
	if err := os.Link(filepath.Join(dir, "secret.txt"), filepath.Join(dir, "site", "notes.txt")); err != nil {
		log.Fatal(err)
	}

	_, err = bundle.Load(context.Background(), filepath.Join(dir, "site"), bundle.Options{})
	fmt.Println("refused:", errors.Is(err, bundle.ErrHardLink))
	_, err = bundle.Load(context.Background(), filepath.Join(dir, "site"), bundle.Options{AllowHardLinks: true})
	fmt.Println("allowed:", err == nil)
	// Output:
	// refused: true
	// allowed: true
}

func ExampleHashedName() {
	for _, name := range []string{
		"assets/index-BHr7Ra_x.js", // Vite
		"main.3f2a9c1b.js",         // webpack
		"index.html",
		"jquery-3.6.0.min.js", // a version, not a hash
	} {
		fmt.Println(name, bundle.HashedName(name))
	}
	// Output:
	// assets/index-BHr7Ra_x.js true
	// main.3f2a9c1b.js true
	// index.html false
	// jquery-3.6.0.min.js false
}
