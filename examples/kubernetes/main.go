// Command kubernetes is a server made for a Kubernetes Deployment (the
// manifests beside it): it loses no request when its pods are rolled,
// evicted or deleted, and hot-swaps its feature flags from a mounted
// ConfigMap with no restart. README.md explains every setting.
//
//   - On the pod's deletion the kubelet calls the preStop hook
//     (/prestop on -health-addr): the server serves on for
//     -shutdown-delay, answering with "Connection: close" so that
//     keep-alive clients move to other pods, while kube-proxy (and any
//     load balancer) stops routing to it; then it drains (in-flight
//     requests and streams finish) and the hook returns. The SIGTERM that
//     follows changes nothing; the process exits 0, well within
//     -grace-period, which it checks at start.
//   - The probes answer on -health-addr, a port of their own: /startupz
//     (green once serving), /readyz, /livez.
//   - The flags file (-flags, a ConfigMap's key) is watched: the
//     kubelet's update of the volume (an atomic swap of its ..data
//     symlink) is served within milliseconds of reaching the pod.
//   - With -grpc-addr it also serves gRPC (the load generator's test
//     service) and gRPC's standard health service, kept in step with
//     readiness.
//
// Endpoints on -addr: upgradertest.Handler's (/, /pid, /slow?ms=N,
// /stream?s=N), and /greeting, which answers with the flag "greeting".
// HTTP/1.1 and h2c (HTTP/2 without TLS, with prior knowledge).
//
// As PID 1 of its container it refuses SIGHUP (an in-place upgrade would
// end the container with the old generation): roll out a new image.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/handoff-go/handoff"
	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/upgrader/upgradertest"
	"github.com/handoff-go/handoff/upgrader/upgradertest/grpcload"
)

// registry holds the program's one flag.
var registry flags.Registry

var greeting = registry.String(flags.Def{
	Name:        "greeting",
	Description: "the word /greeting answers with",
	Owner:       "team-example",
	RemoveBy:    "2030-12-31",
}, "hello",
	flags.Variant[string]{Name: "hello", Value: "hello"},
	flags.Variant[string]{Name: "bonjour", Value: "bonjour"},
	flags.Variant[string]{Name: "hallo", Value: "hallo"})

func main() { os.Exit(run()) }

// config is the command's flags.
type config struct {
	addr, healthAddr, grpcAddr, flagsFile, pidFile string
	shutdownDelay, drainTimeout, gracePeriod       time.Duration
	warmup, probation                              time.Duration
	notReadyOnStop, keepAliveDuringDelay, logJSON  bool
}

// parseFlags parses args (os.Args[1:]) into a config; the manifests'
// args are checked with it (main_test.go).
func parseFlags(fs *flag.FlagSet, args []string) (config, error) {
	var c config
	fs.StringVar(&c.addr, "addr", ":8080", "address to serve HTTP on")
	fs.StringVar(&c.healthAddr, "health-addr", ":8081", "address of the probes and the preStop endpoint")
	fs.StringVar(&c.grpcAddr, "grpc-addr", "", "also serve gRPC (a test service and the standard health service) on this address")
	fs.StringVar(&c.flagsFile, "flags", "/config/flags.json", "the flags' values file, watched (\"\": defaults only)")
	fs.DurationVar(&c.shutdownDelay, "shutdown-delay", 5*time.Second, "on a stop, serve on this long before draining")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 20*time.Second, "how long the drain may take before connections are closed")
	fs.DurationVar(&c.gracePeriod, "grace-period", 30*time.Second, "the pod's terminationGracePeriodSeconds, checked at start")
	fs.BoolVar(&c.notReadyOnStop, "not-ready-on-stop", false, "fail readiness from the stop on (see package health before turning it on)")
	fs.BoolVar(&c.keepAliveDuringDelay, "keepalive-during-delay", false, "keep connections open during the shutdown delay")
	fs.DurationVar(&c.warmup, "warmup", 0, "the first health check takes this long (a cache warming up: the startup probe waits)")
	fs.DurationVar(&c.probation, "probation", 0, "how long a new generation serves under watch before it commits (in-place upgrades: not as PID 1)")
	fs.StringVar(&c.pidFile, "pidfile", "", "PID file naming the generation in charge (outside Kubernetes)")
	fs.BoolVar(&c.logJSON, "log-json", false, "log JSON records instead of text")
	err := fs.Parse(args)
	return c, err
}

func run() int {
	c, err := parseFlags(flag.CommandLine, os.Args[1:])
	if err != nil {
		return 2 // flag.ExitOnError has exited already
	}
	var handler slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	if c.logJSON {
		handler = slog.NewJSONHandler(os.Stderr, nil)
	}
	log := slog.New(handler).With("pid", os.Getpid())
	host, _ := os.Hostname()

	set := flags.New(&registry, c.flagsFile, flags.Options{Logger: log})
	defer set.Close()
	var reload func(context.Context) error
	if c.flagsFile != "" {
		if err := set.Reload(context.Background()); err != nil {
			log.Error("cannot load the flags", "error", err)
			return 1
		}
		reload = set.Reload // SIGUSR2
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		wg.Go(func() {
			if err := set.Watch(ctx); !errors.Is(err, context.Canceled) {
				log.Error("flags: not watching", "error", err)
			}
		})
	}

	mux := http.NewServeMux()
	mux.Handle("/", upgradertest.Handler())
	mux.HandleFunc("GET /greeting", func(w http.ResponseWriter, r *http.Request) {
		snap, _ := flags.FromContext(r.Context())
		fmt.Fprintf(w, "%s from %s (flags version %d)\n", greeting.Get(snap, ""), host, snap.Seq())
	})
	srv := &http.Server{Handler: set.Handler(mux), ReadHeaderTimeout: 10 * time.Second}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	servers := []handoff.Server{handoff.HTTP(srv, c.addr)}

	opts := handoff.Options{
		PIDFile:              c.pidFile,
		Probation:            c.probation,
		DrainTimeout:         c.drainTimeout,
		ShutdownDelay:        c.shutdownDelay,
		KeepAliveDuringDelay: c.keepAliveDuringDelay,
		NotReadyOnStop:       c.notReadyOnStop,
		GracePeriod:          c.gracePeriod,
		HealthAddr:           c.healthAddr,
		HealthCheck:          warmup(c.warmup),
		Reload:               reload,
		Logger:               log,
	}
	if c.grpcAddr != "" {
		gs := grpc.NewServer()
		grpcload.Register(gs)
		hs := grpchealth.NewServer()
		healthpb.RegisterHealthServer(gs, hs)
		servers = append(servers, handoff.GRPC(gs, c.grpcAddr))
		opts.GRPCHealth = hs
	}
	if err := handoff.Run(context.Background(), opts, servers...); err != nil {
		log.Error("exiting", "error", err)
		return 1
	}
	return 0
}

// warmup returns the health check: its first call takes d (nothing
// accepts meanwhile, and the startup probe says 503); the readiness probe
// calls it too, at once after that.
func warmup(d time.Duration) func(context.Context) error {
	var warm atomic.Bool
	return func(ctx context.Context) error {
		if warm.Load() || d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			warm.Store(true)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
