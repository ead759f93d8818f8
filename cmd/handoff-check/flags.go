//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// Defaults of the flags.
const (
	defaultUpgrades       = 20
	defaultInterval       = time.Second
	defaultUpgradeTimeout = time.Minute
	defaultStopTimeout    = time.Minute
	defaultReadyTimeout   = 30 * time.Second
	defaultClients        = 12
	defaultRate           = 1000
	defaultTimeout        = 15 * time.Second
	defaultStreamTime     = 5 * time.Second
	defaultWarmUp         = time.Second
	defaultNear           = time.Second
)

// Who gets the upgrade and stop signals (-signal-to).
const (
	toPIDFile = "pidfile" // the pid in -pidfile
	toMain    = "main"    // the process the checker started
	toServing = "serving" // the process that answered the last probe
)

// config is the command line.
type config struct {
	Server    []string // the server command, after the flags
	Addr      string
	PIDFile   string
	ServerLog string

	Upgrades       int
	Interval       time.Duration
	Signal         syscall.Signal
	SignalTo       string
	UpgradeCmd     string
	UpgradeTimeout time.Duration
	StopSignal     syscall.Signal
	StopCmd        string
	StopTimeout    time.Duration
	ReadyTimeout   time.Duration

	Requests      []upgradertest.Request
	Probe         upgradertest.Request
	Host          string
	Clients       int
	Rate          float64
	Slow          *upgradertest.Request
	SlowClients   int
	Stream        *upgradertest.Request
	StreamClients int
	StreamTime    time.Duration
	H2C           int
	Timeout       time.Duration
	WarmUp        time.Duration
	Near          time.Duration

	Budget int
	JSON   string
	Quiet  bool
}

// errUsage is a command line the checker cannot run: exit status 2.
var errUsage = errors.New("usage")

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ", ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// parseFlags reads the command line (without the program's name). Errors
// wrap errUsage.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var (
		c                   config
		requests, headers   listFlag
		probe, slow, stream string
		signal, stopSignal  string
		fs                  = flag.NewFlagSet("handoff-check", flag.ContinueOnError)
		usageErr            = func(format string, a ...any) (config, error) {
			return config{}, fmt.Errorf("%w: "+format, append([]any{errUsage}, a...)...)
		}
	)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.Addr, "addr", "", "`host:port` the server serves HTTP on (required)")
	fs.StringVar(&c.PIDFile, "pidfile", "", "the server's PID file: the upgrade signal goes to the pid in it, and an upgrade is complete only once it names a new, live pid")
	fs.StringVar(&c.ServerLog, "server-log", "", "append the output of the server and of the commands to this `file` (default: the checker's stderr)")
	fs.DurationVar(&c.ReadyTimeout, "ready-timeout", defaultReadyTimeout, "how long the server may take to answer after it starts")

	fs.IntVar(&c.Upgrades, "upgrades", defaultUpgrades, "upgrades to trigger, one after the other")
	fs.DurationVar(&c.Interval, "interval", defaultInterval, "pause between the end of one upgrade and the next trigger")
	fs.StringVar(&signal, "signal", "HUP", "the `signal` that triggers an upgrade")
	fs.StringVar(&c.SignalTo, "signal-to", "", "which process gets the signals: pidfile (the pid in -pidfile), main (the process the checker started, for a master process that stays, overseer-style) or serving (the process that answered the last probe); default pidfile with -pidfile, else serving")
	fs.StringVar(&c.UpgradeCmd, "upgrade-cmd", "", "trigger each upgrade by running this `command` with sh -c instead of a signal: systemctl reload app, a script that installs a new build and signals, a stop-and-start (see the environment in the doc)")
	fs.DurationVar(&c.UpgradeTimeout, "upgrade-timeout", defaultUpgradeTimeout, "how long an upgrade may take to complete, from its trigger")
	fs.StringVar(&stopSignal, "stop-signal", "TERM", "the `signal` that stops the server at the end")
	fs.StringVar(&c.StopCmd, "stop-cmd", "", "stop the server at the end by running this `command` with sh -c instead of a signal")
	fs.DurationVar(&c.StopTimeout, "stop-timeout", defaultStopTimeout, "how long the server's processes may take to exit once stopped")

	fs.Var(&requests, "request", "a request of the load: `METHOD PATH [BODY]` (BODY @file reads a file), repeatable, taken in turn; default GET /")
	fs.Var(&headers, "header", "a header field sent with every request: `Name: value`, repeatable")
	fs.StringVar(&c.Host, "host", "", "the Host header (default: -addr)")
	fs.StringVar(&probe, "probe", "", "the request that asks whether the server answers and which process answers (`METHOD PATH`; default the first -request if it is a GET or HEAD, else GET /)")
	fs.IntVar(&c.Clients, "clients", defaultClients, "HTTP/1.1 clients of -request, split evenly: keep-alive clients that check the connection before reuse, keep-alive clients that reuse it blindly, a new connection per request")
	fs.Float64Var(&c.Rate, "rate", defaultRate, "requests per second of the -clients together, at most (every client pauses clients/rate between two requests)")
	fs.StringVar(&slow, "slow", "", "a slow request (`METHOD PATH [BODY]`), in flight at every upgrade, on -slow-clients keep-alive clients")
	fs.IntVar(&c.SlowClients, "slow-clients", 2, "clients of -slow")
	fs.StringVar(&stream, "stream", "", "a streamed response (`METHOD PATH`) that must end as its framing says, on -stream-clients clients with a new connection each")
	fs.IntVar(&c.StreamClients, "stream-clients", 2, "clients of -stream")
	fs.DurationVar(&c.StreamTime, "stream-time", defaultStreamTime, "how long a -stream response may last, besides -timeout")
	fs.IntVar(&c.H2C, "h2c", 0, "HTTP/2 clients with prior knowledge (h2c), `n` of each kind: 8 concurrent streams on one connection, and a connection idle between bursts")
	fs.DurationVar(&c.Timeout, "timeout", defaultTimeout, "how long one request may take")
	fs.DurationVar(&c.WarmUp, "warmup", defaultWarmUp, "load before the first upgrade and after the last")
	fs.DurationVar(&c.Near, "near", defaultNear, "a request is near an upgrade from the trigger to this long after the new generation first answered")

	fs.IntVar(&c.Budget, "budget", 0, "failed requests allowed")
	fs.StringVar(&c.JSON, "json", "", "write the report as JSON to this `file` (- for stdout, the text report then goes to stderr)")
	fs.BoolVar(&c.Quiet, "quiet", false, "no progress lines on stderr")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, err
		}
		return usageErr("%v", err)
	}
	c.Server = fs.Args()
	if len(c.Server) == 0 {
		return usageErr("no server command: handoff-check [flags] -- server-command [args...]")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil || c.Addr == "" {
		return usageErr("-addr %q: want host:port", c.Addr)
	}
	if c.Host == "" {
		c.Host = c.Addr
	}
	var err error
	if c.Signal, err = parseSignal(signal); err != nil {
		return usageErr("-signal: %v", err)
	}
	if c.StopSignal, err = parseSignal(stopSignal); err != nil {
		return usageErr("-stop-signal: %v", err)
	}
	switch c.SignalTo {
	case "":
		c.SignalTo = toServing
		if c.PIDFile != "" {
			c.SignalTo = toPIDFile
		}
	case toPIDFile:
		if c.PIDFile == "" {
			return usageErr("-signal-to pidfile needs -pidfile")
		}
	case toMain, toServing:
	default:
		return usageErr("-signal-to %q: want pidfile, main or serving", c.SignalTo)
	}
	header := http.Header{}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return usageErr("-header %q: want Name: value", h)
		}
		header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if len(header) == 0 {
		header = nil
	}
	if len(requests) == 0 {
		requests = listFlag{"GET /"}
	}
	for _, r := range requests {
		req, err := parseRequest(r, header)
		if err != nil {
			return usageErr("-request: %v", err)
		}
		c.Requests = append(c.Requests, req)
	}
	if slow != "" {
		r, err := parseRequest(slow, header)
		if err != nil {
			return usageErr("-slow: %v", err)
		}
		c.Slow = &r
	}
	if stream != "" {
		r, err := parseRequest(stream, header)
		if err != nil {
			return usageErr("-stream: %v", err)
		}
		c.Stream = &r
	}
	switch {
	case probe != "":
		if c.Probe, err = parseRequest(probe, header); err != nil {
			return usageErr("-probe: %v", err)
		}
	case c.Requests[0].Method == http.MethodGet || c.Requests[0].Method == http.MethodHead:
		c.Probe = c.Requests[0]
	default:
		c.Probe = upgradertest.Request{Method: http.MethodGet, Path: "/", Header: header}
	}
	switch {
	case c.Upgrades < 1 || c.Upgrades > 100_000:
		return usageErr("-upgrades %d: want 1..100000", c.Upgrades)
	case c.Clients < 3:
		return usageErr("-clients %d: want at least 3 (one of each kind)", c.Clients)
	case c.Rate <= 0:
		return usageErr("-rate %g: want a positive rate", c.Rate)
	case c.SlowClients < 0 || c.StreamClients < 0 || c.H2C < 0 || c.Budget < 0:
		return usageErr("-slow-clients, -stream-clients, -h2c and -budget may not be negative")
	case c.UpgradeTimeout <= 0 || c.StopTimeout <= 0 || c.ReadyTimeout <= 0 || c.Timeout <= 0 || c.StreamTime <= 0:
		return usageErr("the timeouts must be positive")
	case c.Interval < 0 || c.WarmUp < 0 || c.Near < 0:
		return usageErr("-interval, -warmup and -near may not be negative")
	}
	return c, nil
}

// parseRequest reads "METHOD PATH [BODY]" or "PATH"; a BODY "@file" is
// the file's content.
func parseRequest(s string, header http.Header) (upgradertest.Request, error) {
	f := strings.SplitN(strings.TrimSpace(s), " ", 3)
	r := upgradertest.Request{Method: http.MethodGet, Header: header}
	switch {
	case len(f) == 1 && strings.HasPrefix(f[0], "/"):
		r.Path = f[0]
	case len(f) >= 2:
		r.Method, r.Path = strings.ToUpper(f[0]), strings.TrimSpace(f[1])
	}
	if !strings.HasPrefix(r.Path, "/") || strings.ContainsAny(r.Path, " \r\n") {
		return r, fmt.Errorf("%q: want METHOD /path [BODY]", s)
	}
	if len(f) == 3 {
		body := f[2]
		if name, ok := strings.CutPrefix(body, "@"); ok {
			b, err := os.ReadFile(name)
			if err != nil {
				return r, err
			}
			r.Body = b
		} else {
			r.Body = []byte(body)
		}
	}
	return r, nil
}

// parseSignal reads HUP, SIGHUP or a number.
func parseSignal(s string) (syscall.Signal, error) {
	name := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

// trigger describes how an upgrade is triggered, for the report.
func (c config) trigger() string {
	if c.UpgradeCmd != "" {
		return "command: " + c.UpgradeCmd
	}
	return fmt.Sprintf("signal %s to %s", unix.SignalName(c.Signal), c.signalTarget())
}

// stopHow describes how the server is stopped, for the report.
func (c config) stopHow() string {
	if c.StopCmd != "" {
		return "command: " + c.StopCmd
	}
	return fmt.Sprintf("signal %s to %s", unix.SignalName(c.StopSignal), c.signalTarget())
}

func (c config) signalTarget() string {
	switch c.SignalTo {
	case toPIDFile:
		return "the pid in " + c.PIDFile
	case toMain:
		return "the process the checker started"
	}
	return "the process that answers"
}

const usageText = `handoff-check upgrades a server under load and fails if a request is lost.

Usage:

	handoff-check [flags] -- server-command [args...]

It starts the server command, waits until it answers on -addr, puts a load of
clients that never retry on it, triggers -upgrades upgrades one after the other
(SIGHUP to the pid in -pidfile by default, or -upgrade-cmd), waits for each to
complete, stops the server, and reports. Exit status 0: every upgrade completed,
at most -budget requests failed, and no process was left behind; 1: not so (the
last line says why); 2: a bad command line.

Flags:
`
