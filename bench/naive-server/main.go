// Command naive-server is the benchmark's stop-and-start target: the test
// handler that examples/httpserver serves too (upgradertest.Handler) on a
// plain net.Listen socket, with no socket hand-over. On SIGTERM (or SIGINT) it calls http.Server.Shutdown,
// which closes the listening socket at once, waits for in-flight requests
// (30 s at most), and exits. A restart is what a process supervisor's
// "restart" does: bench/upgrade sends SIGTERM, waits for the process to
// exit, and only then starts a new one on the same address, so connections
// are refused between the two.
//
//	naive-server -addr 127.0.0.1:8080
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	ossignal "os/signal"
	"syscall"
	"time"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

func main() { os.Exit(run()) }

func run() int {
	addr := flag.String("addr", "127.0.0.1:8080", "TCP address to serve HTTP on")
	shutdownTimeout := flag.Duration("shutdown-timeout", 30*time.Second, "how long Shutdown may wait for in-flight requests")
	flag.Parse()
	log.SetPrefix(fmt.Sprintf("naive-server %d ", os.Getpid()))

	ctx, stop := ossignal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Println("cannot listen:", err)
		return 1
	}
	server := &http.Server{Handler: upgradertest.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- server.Serve(ln) }()
	log.Println("serving on", ln.Addr())

	select {
	case <-ctx.Done():
	case err := <-served:
		log.Println("serve:", err)
		return 1
	}
	sctx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
	defer cancel()
	if err := server.Shutdown(sctx); err != nil {
		log.Println("shutdown:", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		log.Println("serve:", err)
	}
	log.Println("exiting")
	return 0
}
