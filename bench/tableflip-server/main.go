// Command tableflip-server is the benchmark's baseline: the test handler
// that examples/httpserver serves too (upgradertest.Handler) on plain
// github.com/cloudflare/tableflip v1.2.3 with the graceful shutdown that
// tableflip's README points to (its http_example_test.go): on SIGHUP the
// process calls Upgrade, which starts the same binary with the listening
// socket and waits for it to be ready; once Exit is closed the old process
// calls http.Server.Shutdown and exits, with a 30 s deadline. SIGTERM stops
// it the same way (Stop, then Shutdown). With -signals-first it subscribes
// to its signals before it serves, as handoff does, instead of on a
// goroutine that nothing waits for: the benchmark's tableflip-signals-first
// target, which prices that guarantee.
//
// bench/upgrade builds and drives it; it is not meant as an example to copy.
//
//	tableflip-server -addr 127.0.0.1:8080 -pidfile /tmp/tf.pid
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	ossignal "os/signal"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

func main() { os.Exit(run()) }

func run() int {
	addr := flag.String("addr", "127.0.0.1:8080", "TCP address to serve HTTP on")
	pidFile := flag.String("pidfile", "", "write the pid of the process in charge here")
	shutdownTimeout := flag.Duration("shutdown-timeout", 30*time.Second, "exit anyway this long after the upgrade (or stop) began draining")
	signalsFirst := flag.Bool("signals-first", false, "subscribe to the signals before serving (handoff's guarantee: no signal finds its default disposition once the process accepts), instead of on the side")
	flag.Parse()
	log.SetPrefix(fmt.Sprintf("tableflip-server %d ", os.Getpid()))

	upg, err := tableflip.New(tableflip.Options{PIDFile: *pidFile})
	if err != nil {
		log.Println("cannot start:", err)
		return 1
	}
	defer upg.Stop()

	// Upgrade on SIGHUP; stop on SIGTERM or SIGINT. The goroutine lives as
	// long as the process.
	sig := make(chan os.Signal, 1)
	subscribe := func() { ossignal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, os.Interrupt) }
	if *signalsFirst {
		subscribe()
	}
	go func() {
		if !*signalsFirst {
			subscribe()
		}
		for s := range sig {
			if s != syscall.SIGHUP {
				upg.Stop()
				continue
			}
			if err := upg.Upgrade(); err != nil {
				log.Println("upgrade failed:", err)
			}
		}
	}()

	ln, err := upg.Listen("tcp", *addr)
	if err != nil {
		log.Println("cannot listen:", err)
		return 1
	}
	defer ln.Close()

	server := &http.Server{Handler: upgradertest.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := server.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Println("serve:", err)
		}
	}()

	if err := upg.Ready(); err != nil {
		log.Println("not ready:", err)
		return 1
	}
	log.Println("serving on", ln.Addr())
	<-upg.Exit()

	// The README's pattern: a deadline on exiting, then Shutdown.
	time.AfterFunc(*shutdownTimeout, func() {
		log.Println("graceful shutdown timed out")
		os.Exit(1)
	})
	_ = server.Shutdown(context.Background())
	log.Println("exiting")
	return 0
}
