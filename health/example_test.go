package health_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	ossignal "os/signal"
	"syscall"
	"time"

	"github.com/handoff-go/handoff/health"
)

// A Policy through a process's life, as its probes see it. With no
// shutdown delay, Stop calls Drain at once.
func ExamplePolicy() {
	p := health.New(health.Options{Drain: func() { fmt.Println("drain") }})
	defer p.Close()
	h := p.Handler()
	show := func() {
		for _, path := range []string{health.PathLive, health.PathStartup, health.PathReady} {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
			fmt.Print(path, " ", w.Code, ", ")
		}
		fmt.Println(p.Phase())
	}
	show()
	p.Started() // in charge: serving
	show()
	p.Stop(errors.New("SIGTERM"))
	show()
	p.Drained() // the program's drain is over
	show()
	// Output:
	// /livez 200, /startupz 503, /readyz 503, starting
	// /livez 200, /startupz 200, /readyz 200, serving
	// drain
	// /livez 200, /startupz 200, /readyz 200, draining
	// /livez 200, /startupz 200, /readyz 503, stopped
}

// The termination policy by hand, for a server that does not use
// handoff.Run (which does all of this, and drains without losing a request:
// http.Server.Shutdown alone closes idle keep-alive connections under
// their clients' feet; see package listener). SIGTERM or the preStop hook
// starts it: the server serves on for 5 s, answering with "Connection:
// close", then Drain shuts it down, and Drained releases the preStop calls.
func Example_byHand() {
	srv := &http.Server{Handler: http.NotFoundHandler()}
	var p *health.Policy
	p = health.New(health.Options{
		ShutdownDelay: 5 * time.Second,
		DrainTimeout:  20 * time.Second,
		GracePeriod:   30 * time.Second, // terminationGracePeriodSeconds: checked now
		Drain: func() { // must not wait
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
				p.Drained()
			}()
		},
		Logger: slog.Default(),
	})
	defer p.Close()
	srv.Handler = p.Wrap(srv.Handler)

	// The probes and /prestop on a port of their own.
	probes := &http.Server{Addr: ":8081", Handler: p.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = probes.ListenAndServe() }()
	defer probes.Close()

	sigs := make(chan os.Signal, 1)
	ossignal.Notify(sigs, syscall.SIGTERM)
	defer ossignal.Stop(sigs)
	go func() {
		select {
		case sig := <-sigs:
			p.Stop(fmt.Errorf("%v", sig))
		case <-p.Done():
		}
	}()

	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		slog.Error("listen", "error", err)
		return
	}
	p.Started() // startup and readiness probes turn green
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		slog.Error("serve", "error", err)
		return
	}
	<-p.Done() // the drain is over; the preStop calls return
}
