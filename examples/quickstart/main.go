// Command quickstart is the README's quick start: an HTTP server that
// upgrades itself on SIGHUP, drains on SIGTERM and loses no request.
package main

import (
	"flag"
	"log"
	"log/slog"
	"net/http"

	"github.com/handoff-go/handoff"
	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to serve on")
	pidFile := flag.String("pidfile", "", "PID file naming the generation in charge")
	flag.Parse()
	srv := &http.Server{Addr: *addr, Handler: upgradertest.Handler()}
	if err := handoff.ListenAndServe(srv, handoff.Options{PIDFile: *pidFile, Logger: slog.Default()}); err != nil {
		log.Fatal(err)
	}
}
