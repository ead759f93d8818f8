package reload_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/handoff-go/handoff/reload"
)

// A request keeps the version it started with while a swap happens, and the
// old version is released when that request ends.
func Example() {
	type config struct{ Greeting string }
	v := reload.New(reload.Options[*config]{
		Validate: func(c *config) error {
			if c.Greeting == "" {
				return fmt.Errorf("empty greeting")
			}
			return nil
		},
		Release: func(c *config) { fmt.Println("released", c.Greeting) },
	})
	defer v.Close()

	_, _ = v.Swap(&config{Greeting: "hello"}, reload.Info{ID: "v1", Source: "built-in"})

	lease, _ := v.Acquire() // a request starts
	_, _ = v.Swap(&config{Greeting: "bonjour"}, reload.Info{ID: "v2"})
	if _, err := v.Swap(&config{}, reload.Info{ID: "v3"}); err != nil {
		fmt.Println("refused:", err)
	}
	fmt.Println("request sees", lease.Value().Greeting)
	lease.Release() // the request ends: v1 is released

	now, _ := v.Acquire()
	fmt.Println("now", now.Value().Greeting, "seq", now.Version().Seq)
	now.Release()
	// Output:
	// refused: reload: validate v3: empty greeting
	// request sees hello
	// released hello
	// now bonjour seq 2
	// released bonjour
}

// Rollback returns at once to a retained version, even after its source
// file was overwritten.
func ExampleValue_Rollback() {
	v := reload.New(reload.Options[string]{Retain: 1})
	defer v.Close()
	_, _ = v.Swap("good", reload.Info{ID: "a"})
	_, _ = v.Swap("bad", reload.Info{ID: "b"})
	ver, _ := v.Rollback()
	fmt.Println("current:", ver.ID, ver.Seq)
	for _, r := range v.History() {
		fmt.Println(r.Seq, r.ID, "current:", r.Current, "retained:", r.Retained)
	}
	// Output:
	// current: a 1
	// 2 b current: false retained: true
	// 1 a current: true retained: false
}

// Watch a file, reload it on change and on demand.
func ExampleWatcher() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "motd.txt")
	_ = os.WriteFile(path, []byte("hello\n"), 0o644)

	v := reload.New(reload.Options[string]{})
	defer v.Close()
	load := func(ctx context.Context) (string, reload.Info, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", reload.Info{}, err
		}
		sum := sha256.Sum256(b)
		return strings.TrimSpace(string(b)), reload.Info{ID: hex.EncodeToString(sum[:])}, nil
	}
	w, err := reload.NewWatcher(v, path, load, reload.WatcherOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Reload(context.Background()); err != nil { // the first version
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = w.Run(ctx) }() // Close waits for it to return

	// Serve it: each request leases the current version.
	mux := http.NewServeMux()
	mux.HandleFunc("/motd", func(rw http.ResponseWriter, r *http.Request) {
		l, ok := v.Acquire()
		if !ok {
			http.Error(rw, "not loaded", http.StatusServiceUnavailable)
			return
		}
		defer l.Release()
		fmt.Fprintln(rw, l.Value())
	})

	_ = mux // http.ListenAndServe(addr, mux)

	// Deploy: write next to it and rename it into place; or call w.Reload
	// for SIGUSR2 (handoff.Options.Reload).
	_ = os.WriteFile(path+".tmp", []byte("bonjour\n"), 0o644)
	_ = os.Rename(path+".tmp", path)
	ver, _ := w.Reload(context.Background())
	l, _ := v.Acquire()
	fmt.Println(l.Value(), ver.Seq)
	l.Release()
	// Output: bonjour 2
}
