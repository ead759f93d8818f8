// Command httpserver is an HTTP (and optionally gRPC) server that upgrades
// itself in place on SIGHUP with no failed request, drains on SIGTERM, and
// rolls back a broken new binary on its own. It is examples/quickstart with
// every knob exposed, and the server the project's tests and demo upgrade.
//
//	go build -o /tmp/httpserver ./examples/httpserver
//	/tmp/httpserver -addr 127.0.0.1:8080 -pidfile /tmp/httpserver.pid &
//	curl 127.0.0.1:8080/            # pid 4711 generation 1
//	go build -o /tmp/httpserver ./examples/httpserver   # a new binary
//	kill -HUP $(cat /tmp/httpserver.pid)
//	curl 127.0.0.1:8080/            # pid 4790 generation 2
//
// Endpoints (upgradertest.Handler): / (pid and generation), /pid,
// /slow?ms=N, /stream?s=N (a line every 100 ms, then "done"), /healthz; and
// /state, the state blob the previous generation handed over.
//
// With -admin-addr it also serves package admin's page and its metrics
// (Prometheus, at /metrics) on that address, handed over at each upgrade
// like the others; -admin-token enables the page's controls for requests
// that carry the token; -flags adds a flag set (one flag, new-greeting,
// evaluated for every request) whose values file the page can change:
//
//	/tmp/httpserver -addr 127.0.0.1:8080 -admin-addr 127.0.0.1:9090 -admin-token s3cret &
//	xdg-open http://127.0.0.1:9090/   # or open, or any browser
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/handoff-go/handoff"
	"github.com/handoff-go/handoff/listener"
	"github.com/handoff-go/handoff/upgrader"
	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// breakMode builds a deliberately broken binary, for the demo and the tests:
// go build -ldflags "-X main.breakMode=MODE". MODE is one of exit (exits
// with status 3 before it is ready), hang (never becomes ready), unhealthy
// (fails its first health check), probation-unhealthy (fails a health check
// during probation), crash (exits with status 2 during probation), no-new (a
// binary that never contacts the previous generation: it sleeps).
var breakMode string

func main() { os.Exit(run()) }

func run() int {
	c := parseFlags()
	var handler slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	if c.logJSON {
		handler = slog.NewJSONHandler(os.Stderr, nil)
	}
	log := slog.New(handler).With("pid", os.Getpid())
	if code, broken := brokenStart(log); broken {
		return code
	}

	var served atomic.Uint64
	mux := newMux(&served)
	obs, err := newObservability(c, log)
	if err != nil {
		log.Error("cannot set up the admin page", "error", err)
		return 1
	}
	defer obs.close()
	srv := &http.Server{Handler: obs.wrap(mux), ReadHeaderTimeout: 10 * time.Second}
	if c.h2c {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	servers := []handoff.Server{handoff.HTTP(srv, c.httpAddrs()...)}
	if c.tlsAddr != "" {
		tsrv, err := tlsServer(mux, c.tlsCert, c.tlsKey)
		if err != nil {
			log.Error("cannot load the certificate", "error", err)
			return 1
		}
		servers = append(servers, handoff.HTTP(tsrv, c.tlsAddr))
	}
	if c.grpcAddr != "" {
		gs, err := grpcServer(c.grpcAddr)
		if err != nil {
			log.Error("cannot serve gRPC", "error", err)
			return 1
		}
		servers = append(servers, gs)
	}
	if obs.admin != nil {
		servers = append(servers, handoff.HTTP(obs.admin, c.adminAddr))
	}

	healthChecks := 0
	err = handoff.Run(context.Background(), handoff.Options{
		PIDFile:        c.pidFile,
		UpgradeTimeout: c.upgradeTimeout,
		Probation:      c.probation,
		DrainTimeout:   c.drainTimeout,
		IdleGrace:      c.idleGrace,
		NoHandOver:     c.noHandOver,
		Logger:         log,
		HealthCheck: func(ctx context.Context) error {
			healthChecks++
			return brokenHealth(healthChecks)
		},
		SaveState: func() ([]byte, error) {
			s := fmt.Sprintf("from pid %d, served %d", os.Getpid(), served.Load())
			return []byte(s + strings.Repeat(" ", c.statePad)), nil
		},
		Reload:   obs.reloader(),
		OnEvent:  obs.onEvent,
		OnSignal: obs.onSignal,
		Setup: func(u *upgrader.Upgrader) error {
			if err := obs.attach(u); err != nil {
				return err
			}
			if breakMode == "hang" {
				log.Error("deliberately broken binary: hanging before ready")
				select {}
			}
			if c.udpAddr != "" {
				pc, err := u.ListenPacket("udp", c.udpAddr)
				if err != nil {
					return err
				}
				go udpEcho(pc, u)
			}
			return nil
		},
	}, servers...)
	if err != nil {
		if !errors.Is(err, upgrader.ErrRolledBack) {
			log.Error("exiting", "error", err)
		}
		return 1
	}
	return 0
}

// config is the command's flags.
type config struct {
	addr, unixPath, udpAddr, grpcAddr string
	tlsAddr, tlsCert, tlsKey          string
	h2c                               bool
	pidFile                           string
	drainTimeout, probation           time.Duration
	upgradeTimeout, idleGrace         time.Duration
	noHandOver                        bool
	statePad                          int
	logJSON                           bool
	activatedName                     string
	adminAddr, adminToken, flagsFile  string
}

func parseFlags() config {
	var c config
	flag.StringVar(&c.addr, "addr", "127.0.0.1:8080", "TCP address to serve HTTP on")
	flag.StringVar(&c.unixPath, "unix", "", "also serve HTTP on this unix socket path")
	flag.StringVar(&c.udpAddr, "udp", "", "also answer UDP datagrams on this address (echo with pid)")
	flag.StringVar(&c.grpcAddr, "grpc", "", "also serve gRPC (a test service and health) on this address")
	flag.StringVar(&c.tlsAddr, "tls-addr", "", "also serve HTTPS (HTTP/1.1 and HTTP/2) on this address, with -tls-cert and -tls-key")
	flag.StringVar(&c.tlsCert, "tls-cert", "", "the certificate of -tls-addr")
	flag.StringVar(&c.tlsKey, "tls-key", "", "the key of -tls-cert")
	flag.BoolVar(&c.h2c, "h2c", false, "also accept HTTP/2 without TLS (prior knowledge) on -addr and -unix")
	flag.StringVar(&c.pidFile, "pidfile", "", "write the pid of the generation in charge here")
	flag.DurationVar(&c.drainTimeout, "drain-timeout", 30*time.Second, "how long the old generation may drain before it force-closes connections")
	flag.DurationVar(&c.probation, "probation", 0, "how long a new generation serves under watch before it commits")
	flag.DurationVar(&c.upgradeTimeout, "upgrade-timeout", upgrader.DefaultUpgradeTimeout, "how long a new generation may take to commit")
	flag.DurationVar(&c.idleGrace, "idle-grace", listener.DefaultIdleGrace, "while draining, close a keep-alive connection once it has been idle this long")
	flag.BoolVar(&c.noHandOver, "no-handover", false, "drain idle keep-alive connections instead of handing them to the new generation")
	flag.IntVar(&c.statePad, "state-pad", 0, "pad the state handed to the next generation with this many bytes (to try the size limit)")
	flag.BoolVar(&c.logJSON, "log-json", false, "log JSON records instead of text")
	flag.StringVar(&c.activatedName, "activated-name", "", "serve HTTP on the socket systemd passed under this name (FileDescriptorName=) instead of -addr")
	flag.StringVar(&c.adminAddr, "admin-addr", "", "serve the admin page, its status (JSON) and the Prometheus metrics on this address (keep it internal)")
	flag.StringVar(&c.adminToken, "admin-token", "", "enable the admin page's controls for requests with \"Authorization: Bearer TOKEN\" (default: read-only)")
	flag.StringVar(&c.flagsFile, "flags", "", "with -admin-addr: a JSON values file for the flag new-greeting, shown (and changed) on the admin page")
	flag.Parse()
	return c
}

// httpAddrs are the addresses of the plain HTTP server.
func (c config) httpAddrs() []string {
	addrs := []string{c.addr}
	if c.activatedName != "" {
		// Under socket activation a plain address adopts the passed
		// socket whose address matches; "systemd:NAME" takes one by name.
		addrs = []string{"systemd:" + c.activatedName}
	}
	if c.unixPath != "" {
		addrs = append(addrs, "unix:"+c.unixPath)
	}
	return addrs
}

// newMux serves upgradertest.Handler's endpoints, counting the requests in
// served, and /state, the state blob the previous generation handed over.
func newMux(served *atomic.Uint64) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/", counting(served, upgradertest.Handler()))
	mux.HandleFunc("/state", func(w http.ResponseWriter, r *http.Request) {
		var state []byte
		if u, ok := upgrader.FromContext(r.Context()); ok {
			state = u.State()
		}
		fmt.Fprintf(w, "%s\n", strings.TrimRight(string(state), " "))
	})
	return mux
}

// tlsServer serves h over TLS (HTTP/1.1 and HTTP/2) with the certificate
// in the files certFile and keyFile.
func tlsServer(h http.Handler, certFile, keyFile string) (*http.Server, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}, nil
}

// counting counts the requests h serves, for the state blob.
func counting(n *atomic.Uint64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h.ServeHTTP(w, r)
	})
}

// udpEcho answers each datagram with the pid and the datagram, until the
// generation must exit.
func udpEcho(pc net.PacketConn, u *upgrader.Upgrader) {
	go func() {
		<-u.Exit()
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

// brokenStart implements the deliberately broken builds that never get as
// far as handoff.Run: it reports whether this build is one, and its exit
// status.
func brokenStart(log *slog.Logger) (code int, broken bool) {
	switch breakMode {
	case "no-new":
		log.Error("deliberately broken binary: never contacting the previous generation")
		time.Sleep(time.Hour)
		return 3, true
	case "exit":
		log.Error("deliberately broken binary: exiting before ready")
		return 3, true
	}
	return 0, false
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
