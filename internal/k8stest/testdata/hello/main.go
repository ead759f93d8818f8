// Command hello is the smoke test's server: upgradertest's handler on
// :8080, /host answering the pod's name, /config the file CONFIG_FILE
// names (a mounted ConfigMap). With -ignore-sigterm it ignores SIGTERM, so
// that only the kubelet's SIGKILL ends it.
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

func main() {
	ignore := flag.Bool("ignore-sigterm", false, "ignore SIGTERM")
	flag.Parse()
	if *ignore {
		signal.Ignore(syscall.SIGTERM)
	}
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.Handle("/", upgradertest.Handler())
	mux.HandleFunc("/host", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, host) })
	mux.HandleFunc("/config", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(os.Getenv("CONFIG_FILE"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(b)
	})
	log.Printf("hello: serving on :8080 as %s", host)
	log.Fatal(http.ListenAndServe(":8080", mux))
}
