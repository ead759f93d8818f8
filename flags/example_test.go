package flags_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"

	"github.com/handoff-go/handoff/flags"
)

// The registry of a program: usually package-level variables.
var (
	registry    flags.Registry
	newCheckout = registry.Bool(flags.Def{
		Name:        "new-checkout",
		Description: "the one-page checkout",
		Owner:       "team-payments",
		RemoveBy:    "2099-03-31",
	}, false)
	buttonColor = registry.String(flags.Def{
		Name:        "button-color",
		Description: "the colour of the buy button (A/B)",
		Owner:       "team-growth",
		RemoveBy:    "2099-06-30",
	}, "blue",
		flags.Variant[string]{Name: "blue", Value: "#1f6feb"},
		flags.Variant[string]{Name: "green", Value: "#2da44e"})
)

// Load values from a file, evaluate them for two users, change the file
// and reload.
func Example() {
	dir, _ := os.MkdirTemp("", "flags-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "flags.json")
	_ = os.WriteFile(path, []byte(`{
		"new-checkout": {"percent": 2},
		"button-color": {"weights": {"blue": 50, "green": 50}}
	}`), 0o644)

	set := flags.New(&registry, path, flags.Options{})
	defer set.Close()
	if err := set.Reload(context.Background()); err != nil {
		log.Fatal(err)
	}
	show := func() {
		snap := set.Snapshot() // one version for all the evaluations of a request
		defer snap.Release()
		for _, user := range []string{"user-7", "alice"} {
			color, _ := buttonColor.Variant(snap, user)
			fmt.Printf("%s: new checkout %v, %s button\n", user, newCheckout.Enabled(snap, user), color)
		}
	}
	show()

	// Everyone gets the new checkout: write the file next to the live
	// one, rename it into place, and Reload (or let Watch see it).
	_ = os.WriteFile(path+".tmp", []byte(`{"new-checkout": true, "button-color": "green"}`), 0o644)
	_ = os.Rename(path+".tmp", path)
	if err := set.Reload(context.Background()); err != nil {
		log.Fatal(err)
	}
	show()
	// Output:
	// user-7: new checkout true, blue button
	// alice: new checkout false, green button
	// user-7: new checkout true, green button
	// alice: new checkout true, green button
}

// A refused file names the file, the flag and the problem; the current
// values keep serving.
func ExampleParse() {
	_, err := flags.Parse(&registry, "flags.json", []byte(`{"new-checkout": {"percent": 120}, "buton-color": "green"}`))
	fmt.Println(err)
	// Output:
	// flags: flags.json: flag "new-checkout": percent 120 is not within 0–100: flags: invalid value
	// flags: flags.json: flag "buton-color": not registered: flags: unknown flag
}

// Bucket reproduces an assignment: "alice" falls in bucket 10097 of
// "new-checkout", so a rollout enables her from 10.097 % up.
func ExampleBucket() {
	fmt.Println(flags.Bucket("new-checkout", "alice"))
	// Output: 10097
}

// Serve: every request evaluates its flags in one version of the values,
// SIGUSR2 reloads them, and Watch reloads them when the file changes.
func ExampleSet_Handler() {
	set := flags.New(&registry, "/etc/app/flags.json", flags.Options{})
	defer set.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		snap, _ := flags.FromContext(r.Context())
		user := r.Header.Get("X-User")
		if newCheckout.Enabled(snap, user) {
			fmt.Fprintln(w, "new checkout,", buttonColor.Get(snap, user))
			return
		}
		fmt.Fprintln(w, "old checkout")
	})
	srv := &http.Server{Addr: "127.0.0.1:8080", Handler: set.Handler(mux)}
	_ = srv // handoff.ListenAndServe(srv, handoff.Options{Reload: set.Reload}), with go set.Watch(ctx)
}
