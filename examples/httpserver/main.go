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
	var (
		addr           = flag.String("addr", "127.0.0.1:8080", "TCP address to serve HTTP on")
		unixPath       = flag.String("unix", "", "also serve HTTP on this unix socket path")
		udpAddr        = flag.String("udp", "", "also answer UDP datagrams on this address (echo with pid)")
		grpcAddr       = flag.String("grpc", "", "also serve gRPC (a test service and health) on this address")
		tlsAddr        = flag.String("tls-addr", "", "also serve HTTPS (HTTP/1.1 and HTTP/2) on this address, with -tls-cert and -tls-key")
		tlsCert        = flag.String("tls-cert", "", "the certificate of -tls-addr")
		tlsKey         = flag.String("tls-key", "", "the key of -tls-cert")
		h2c            = flag.Bool("h2c", false, "also accept HTTP/2 without TLS (prior knowledge) on -addr and -unix")
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
	if breakMode == "no-new" {
		log.Error("deliberately broken binary: never contacting the previous generation")
		time.Sleep(time.Hour)
		return 3
	}
	if breakMode == "exit" {
		log.Error("deliberately broken binary: exiting before ready")
		return 3
	}

	var served atomic.Uint64
	mux := http.NewServeMux()
	mux.Handle("/", counting(&served, upgradertest.Handler()))
	mux.HandleFunc("/state", func(w http.ResponseWriter, r *http.Request) {
		var state []byte
		if u, ok := upgrader.FromContext(r.Context()); ok {
			state = u.State()
		}
		fmt.Fprintf(w, "%s\n", strings.TrimRight(string(state), " "))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if *h2c {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	addrs := []string{*addr}
	if *activatedName != "" {
		// Under socket activation a plain address adopts the passed
		// socket whose address matches; "systemd:NAME" takes one by name.
		addrs = []string{"systemd:" + *activatedName}
	}
	if *unixPath != "" {
		addrs = append(addrs, "unix:"+*unixPath)
	}
	servers := []handoff.Server{handoff.HTTP(srv, addrs...)}
	if *tlsAddr != "" {
		cert, err := tls.LoadX509KeyPair(*tlsCert, *tlsKey)
		if err != nil {
			log.Error("cannot load the certificate", "error", err)
			return 1
		}
		tsrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
		servers = append(servers, handoff.HTTP(tsrv, *tlsAddr))
	}
	if *grpcAddr != "" {
		gs, err := grpcServer(*grpcAddr)
		if err != nil {
			log.Error("cannot serve gRPC", "error", err)
			return 1
		}
		servers = append(servers, gs)
	}

	healthChecks := 0
	err := handoff.Run(context.Background(), handoff.Options{
		PIDFile:        *pidFile,
		UpgradeTimeout: *upgradeTimeout,
		Probation:      *probation,
		DrainTimeout:   *drainTimeout,
		IdleGrace:      *idleGrace,
		Logger:         log,
		HealthCheck: func(ctx context.Context) error {
			healthChecks++
			return brokenHealth(healthChecks)
		},
		SaveState: func() ([]byte, error) {
			s := fmt.Sprintf("from pid %d, served %d", os.Getpid(), served.Load())
			return []byte(s + strings.Repeat(" ", *statePad)), nil
		},
		Setup: func(u *upgrader.Upgrader) error {
			if breakMode == "hang" {
				log.Error("deliberately broken binary: hanging before ready")
				select {}
			}
			if *udpAddr != "" {
				pc, err := u.ListenPacket("udp", *udpAddr)
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
