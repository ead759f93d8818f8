// Command httpserver is an HTTP server that upgrades itself in place on
// SIGHUP with no failed request, drains on SIGTERM, and rolls back a broken
// new binary on its own. Copy it as the start of your own server.
//
//	go build -o /tmp/httpserver ./examples/httpserver
//	/tmp/httpserver -addr 127.0.0.1:8080 -pidfile /tmp/httpserver.pid &
//	curl 127.0.0.1:8080/            # pid 4711 generation 1 ...
//	go build -o /tmp/httpserver ./examples/httpserver   # a new binary
//	kill -HUP $(cat /tmp/httpserver.pid)
//	curl 127.0.0.1:8080/            # pid 4790 generation 2 ...
//
// Endpoints: / (pid and generation), /pid (the pid alone), /slow?ms=N,
// /stream?s=N (a line every 100 ms, then a last line "done"), /state (the
// state blob the previous generation handed over), /healthz.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoff-go/handoff/listener"
	"github.com/handoff-go/handoff/signal"
	"github.com/handoff-go/handoff/upgrader"
)

// breakMode builds a deliberately broken binary, for the demo and the tests:
// go build -ldflags "-X main.breakMode=MODE". MODE is one of exit (exits
// with status 3 before it is ready), hang (never becomes ready), unhealthy
// (fails its first health check), probation-unhealthy (fails a health check
// during probation), crash (exits with status 2 during probation).
var breakMode string

func main() { os.Exit(run()) }

func run() int {
	var (
		addr           = flag.String("addr", "127.0.0.1:8080", "TCP address to serve HTTP on")
		unixPath       = flag.String("unix", "", "also serve HTTP on this unix socket path")
		udpAddr        = flag.String("udp", "", "also answer UDP datagrams on this address (echo with pid)")
		pidFile        = flag.String("pidfile", "", "write the pid of the generation in charge here")
		drainTimeout   = flag.Duration("drain-timeout", 30*time.Second, "how long the old generation may drain before it force-closes connections")
		probation      = flag.Duration("probation", 0, "how long a new generation serves under watch before it commits")
		upgradeTimeout = flag.Duration("upgrade-timeout", upgrader.DefaultUpgradeTimeout, "how long a new generation may take to commit")
		idleGrace      = flag.Duration("idle-grace", listener.DefaultIdleGrace, "while draining, close a keep-alive connection once it has been idle this long")
		statePad       = flag.Int("state-pad", 0, "pad the state handed to the next generation with this many bytes (to try the size limit)")
		logJSON        = flag.Bool("log-json", false, "log JSON records instead of text")
		activatedName  = flag.String("activated-name", "", "serve HTTP on the socket systemd passed under this name (FileDescriptorName=) instead of -addr")
	)
	flag.Parse()

	var handler slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	if *logJSON {
		handler = slog.NewJSONHandler(os.Stderr, nil)
	}
	log := slog.New(handler).With("pid", os.Getpid())

	var served atomic.Uint64
	healthChecks := 0
	upg, err := upgrader.New(upgrader.Options{
		UpgradeTimeout: *upgradeTimeout,
		Probation:      *probation,
		DrainTimeout:   *drainTimeout,
		IdleGrace:      *idleGrace,
		PIDFile:        *pidFile,
		Logger:         log,
		HealthCheck: func(ctx context.Context) error {
			healthChecks++
			return brokenHealth(healthChecks)
		},
		SaveState: func() ([]byte, error) {
			s := fmt.Sprintf("from pid %d, served %d", os.Getpid(), served.Load())
			return []byte(s + strings.Repeat(" ", *statePad)), nil
		},
	})
	if err != nil {
		log.Error("cannot start", "error", err)
		return 1
	}
	defer upg.Close()
	log = log.With("generation", upg.Generation())
	if breakMode == "exit" {
		log.Error("deliberately broken binary: exiting before ready")
		return 3
	}

	// Under socket activation, Listen adopts the passed socket whose
	// address matches; ListenActivated takes one by name.
	var ln *listener.Listener
	if *activatedName != "" {
		ln, err = upg.ListenActivated(*activatedName)
	} else {
		ln, err = upg.Listen("tcp", *addr)
	}
	if err != nil {
		log.Error("cannot listen", "error", err)
		return 1
	}
	srv := &http.Server{Handler: routes(upg, &served), ReadHeaderTimeout: 10 * time.Second}
	listener.ConfigureServer(srv)
	var serving sync.WaitGroup
	serve := func(l net.Listener) {
		serving.Add(1)
		go func() {
			defer serving.Done()
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				log.Error("serve", "error", err)
			}
		}()
	}
	serve(ln)
	if *unixPath != "" {
		uln, err := upg.Listen("unix", *unixPath)
		if err != nil {
			log.Error("cannot listen", "error", err)
			return 1
		}
		serve(uln)
	}
	if *udpAddr != "" {
		pc, err := upg.ListenPacket("udp", *udpAddr)
		if err != nil {
			log.Error("cannot listen", "error", err)
			return 1
		}
		serving.Add(1)
		go func() { defer serving.Done(); udpEcho(pc, upg) }()
	}
	if breakMode == "hang" {
		log.Error("deliberately broken binary: hanging before ready")
		select {}
	}

	// shutdown drains and stops the server once, whoever asks first.
	var shutdownOnce sync.Once
	shutdown := func(ctx context.Context) {
		shutdownOnce.Do(func() {
			ctx, cancel := context.WithTimeout(ctx, *drainTimeout)
			defer cancel()
			stats, err := upg.Drain(ctx)
			if err != nil {
				log.Warn("drain ended at its deadline", "error", err, "forced", stats.Forced)
			}
			_ = srv.Shutdown(ctx)
			serving.Wait()
		})
	}

	// Handle signals before the PID file names this process (Ready writes
	// it), so that no SIGHUP finds the default disposition.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigReady := make(chan struct{})
	sigDone := make(chan error, 1)
	go func() {
		sigDone <- signal.Run(ctx, signal.Actions{
			Upgrade: func(ctx context.Context) error {
				err := upg.Upgrade(ctx)
				if err != nil {
					log.Error("upgrade failed", "error", err)
				}
				return err
			},
			Stop: func(ctx context.Context, cause error) error {
				log.Info("stopping", "cause", cause)
				upg.Stop()
				shutdown(ctx)
				return nil
			},
			Kill: func(cause error) {
				log.Warn("stopping at once", "cause", cause)
				os.Exit(1)
			},
		}, signal.Options{Logger: log, OnEvent: func(e signal.Event) {
			if e.Kind == signal.EventReady {
				close(sigReady)
			}
		}})
	}()
	<-sigReady

	if err := upg.Ready(ctx); err != nil {
		log.Error("not ready", "error", err)
		shutdown(context.Background())
		cancel()
		<-sigDone
		return 1
	}
	log.Info("serving", "addr", ln.Addr().String(), "state", string(upg.State()))

	select {
	case <-upg.Exit():
		shutdown(context.Background())
		cancel()
		<-sigDone
	case <-sigDone:
		shutdown(context.Background())
	}
	log.Info("exiting")
	return 0
}

func routes(upg *upgrader.Upgrader, served *atomic.Uint64) http.Handler {
	pid := os.Getpid()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		fmt.Fprintf(w, "pid %d generation %d\n", pid, upg.Generation())
	})
	mux.HandleFunc("/pid", func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		fmt.Fprintf(w, "%d\n", pid)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/state", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s\n", strings.TrimRight(string(upg.State()), " "))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		ms = min(max(ms, 0), 60_000)
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "slow %d ms pid %d\n", ms, pid)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		s, _ := strconv.ParseFloat(r.URL.Query().Get("s"), 64)
		s = min(max(s, 0), 600)
		flusher, _ := w.(http.Flusher)
		w.Header().Set("Content-Type", "text/plain")
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		end := time.Now().Add(time.Duration(s * float64(time.Second)))
		for i := 0; time.Now().Before(end); i++ {
			fmt.Fprintf(w, "line %d pid %d\n", i, pid)
			if flusher != nil {
				flusher.Flush()
			}
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintln(w, "done")
	})
	return mux
}

// udpEcho answers each datagram with the pid and the datagram, until the
// generation must exit.
func udpEcho(pc net.PacketConn, upg *upgrader.Upgrader) {
	go func() {
		<-upg.Exit()
		pc.Close()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		reply := fmt.Appendf(nil, "pid %d: %s", os.Getpid(), buf[:n])
		_, _ = pc.WriteTo(reply, from)
	}
}

// brokenHealth implements the health check of the deliberately broken
// builds; a normal build is always healthy.
func brokenHealth(call int) error {
	switch breakMode {
	case "unhealthy":
		return errors.New("deliberately broken binary: unhealthy")
	case "probation-unhealthy":
		if call > 1 {
			return errors.New("deliberately broken binary: unhealthy during probation")
		}
	case "crash":
		if call == 1 {
			go func() {
				time.Sleep(150 * time.Millisecond)
				fmt.Fprintln(os.Stderr, "deliberately broken binary: crashing during probation")
				os.Exit(2)
			}()
		}
	}
	return nil
}
