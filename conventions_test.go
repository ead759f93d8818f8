//go:build linux

package handoff_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff"
	"github.com/handoff-go/handoff/bundle"
	"github.com/handoff-go/handoff/examples/pluginhost/greeter"
	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/health"
	"github.com/handoff-go/handoff/internal/servertest"
	"github.com/handoff-go/handoff/listener"
	"github.com/handoff-go/handoff/plugin"
	"github.com/handoff-go/handoff/reload"
	"github.com/handoff-go/handoff/signal"
	"github.com/handoff-go/handoff/upgrader"
)

// The conventions of ARCHITECTURE.md, checked on real log records and real
// event values of every package: one shape for events, one spelling of the
// slog keys, a message that names its package.

var (
	packages = map[string]bool{"handoff": true, "upgrader": true, "listener": true, "signal": true,
		"health": true, "reload": true, "bundle": true, "plugin": true, "flags": true}
	snakeCase = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	// Keys the convention spells otherwise.
	badKeys = map[string]string{"err": "error", "took": "duration", "elapsed": "duration", "cause": "error"}
)

// checkRecords checks JSON log records (one per line), as slog's JSON
// handler writes them; it returns how many it read.
func checkRecords(t *testing.T, what string, log []byte) int {
	t.Helper()
	n := 0
	for _, line := range bytes.Split(log, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 || line[0] != '{' {
			continue
		}
		var rec map[string]any
		if !assert.NoError(t, json.Unmarshal(line, &rec), "%s: %s", what, line) {
			continue
		}
		msg, _ := rec["msg"].(string)
		pkg, rest, ok := strings.Cut(msg, ": ")
		if !ok || !packages[pkg] {
			continue // the program's own record (the example server logs some)
		}
		n++
		assert.NotEmpty(t, rest, "%s: message %q names no kind: %s", what, msg, line)
		for k, v := range rec {
			if want, bad := badKeys[k]; bad {
				assert.Fail(t, "key spelled otherwise", "%s: key %q, the convention says %q: %s", what, k, want, line)
			}
			assert.Regexp(t, snakeCase, k, "%s: key %q is not snake_case: %s", what, k, line)
			switch k {
			case "duration":
				_, num := v.(float64)
				assert.True(t, num, "%s: duration is not a duration: %s", what, line)
			case "error":
				_, str := v.(string)
				assert.True(t, str, "%s: error is not an error's text: %s", what, line)
				if _, ev := rec["event"]; ev {
					assert.NotEqual(t, "DEBUG", rec["level"], "%s: an event's error at debug level: %s", what, line)
				}
			case "event":
				ev, _ := v.(string)
				assert.Regexp(t, `^[a-z]+(-[a-z]+)*$`, ev, "%s: event %q is not a kebab-case kind: %s", what, ev, line)
			}
		}
	}
	return n
}

// checkEvent checks one event value: Kind (with a String that names it),
// Time (when it happened), Duration and Err, in that order, first.
func checkEvent(t *testing.T, what string, e any) {
	t.Helper()
	v := reflect.ValueOf(e)
	typ := v.Type()
	require.Equal(t, reflect.Struct, typ.Kind(), what)
	want := []struct {
		name string
		typ  reflect.Type
	}{
		{"Kind", nil},
		{"Time", reflect.TypeFor[time.Time]()},
		{"Duration", reflect.TypeFor[time.Duration]()},
		{"Err", reflect.TypeFor[error]()},
	}
	for i, w := range want {
		if !assert.Greater(t, typ.NumField(), i, "%s: %s has too few fields", what, typ) {
			return
		}
		f := typ.Field(i)
		assert.Equal(t, w.name, f.Name, "%s: field %d of %s", what, i, typ)
		if w.typ != nil {
			assert.Equal(t, w.typ, f.Type, "%s: %s.%s", what, typ, f.Name)
		}
	}
	kind := v.Field(0)
	assert.Equal(t, reflect.Int, kind.Kind(), "%s: %s.Kind is not an int enum", what, typ)
	s, ok := kind.Interface().(interface{ String() string })
	if assert.True(t, ok, "%s: %s.Kind has no String", what, typ) {
		name := s.String()
		assert.Regexp(t, `^[a-z]+(-[a-z]+)*$`, name, "%s: kind %v", what, kind.Interface())
	}
	assert.False(t, v.Field(1).Interface().(time.Time).IsZero(), "%s: %s has no Time", what, typ)
}

// collector gathers the events of one package.
type collector[E any] struct {
	mu     sync.Mutex
	events []E
}

func (c *collector[E]) on(e E) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, e)
}

func (c *collector[E]) check(t *testing.T, what string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	require.NotEmpty(t, c.events, "%s: no event", what)
	for _, e := range c.events {
		checkEvent(t, what, e)
	}
}

// syncBuffer is a bytes.Buffer for loggers written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.b.Bytes()...)
}

func jsonLogger(w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestConventionsProcess reads the records of a real server (the root
// package, upgrader, listener and signal) through a start, an upgrade, a
// rolled-back upgrade and a stop.
func TestConventionsProcess(t *testing.T) {
	s, _ := servertest.Start(t, httpserver, servertest.Options{Args: []string{"-probation", "100ms", "-upgrade-timeout", "2s"}})
	s.Install("")
	s.Upgrade()
	s.Install("no-new")
	from := s.Mark()
	s.Signal(s.PID(), syscall.SIGHUP)
	s.WaitRecord(from, 30*time.Second, func(r servertest.Record) bool { return r.Msg == servertest.MsgUpgradeFailed })
	assert.Zero(t, s.Stop())
	var log bytes.Buffer
	for _, r := range s.RecordsSince(0) {
		log.WriteString(r.Raw + "\n")
	}
	n := checkRecords(t, "examples/httpserver", log.Bytes())
	t.Logf("%d records of a real server checked", n)
	seen := map[string]bool{}
	for _, r := range s.RecordsSince(0) {
		if pkg, _, ok := strings.Cut(r.Msg, ": "); ok {
			seen[pkg] = true
		}
	}
	for _, p := range []string{"handoff", "upgrader", "listener", "signal"} {
		assert.True(t, seen[p], "no record of %s", p)
	}
}

// TestConventionsInProcess drives each package in this process and checks
// its records and its events.
func TestConventionsInProcess(t *testing.T) {
	t.Run("upgrader", func(t *testing.T) {
		log, events := upgraderRun(t)
		assert.NotZero(t, checkRecords(t, "upgrader", log))
		events.check(t, "upgrader")
	})
	t.Run("listener", func(t *testing.T) {
		var log syncBuffer
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ln := listener.Wrap(inner, listener.Options{Logger: jsonLogger(&log)})
		ln.Pause()
		ln.Resume()
		_, err = ln.Drain(context.Background())
		require.NoError(t, err)
		require.NoError(t, ln.Close())
		assert.NotZero(t, checkRecords(t, "listener", log.Bytes()))
	})
	t.Run("signal", func(t *testing.T) {
		var log syncBuffer
		var events collector[signal.Event]
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		reloaded := make(chan struct{})
		ready := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- signal.Run(ctx, signal.Actions{Reload: func(context.Context) error {
				close(reloaded)
				return errors.New("a reload that fails")
			}}, signal.Options{Logger: jsonLogger(&log), OnEvent: func(e signal.Event) {
				if e.Kind == signal.EventReady {
					close(ready)
				}
				events.on(e)
			}, KillSignals: []os.Signal{}})
		}()
		<-ready
		require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGUSR2))
		select {
		case <-reloaded:
		case <-time.After(10 * time.Second):
			require.FailNow(t, "SIGUSR2 did not reload")
		}
		cancel()
		<-done
		assert.NotZero(t, checkRecords(t, "signal", log.Bytes()))
		events.check(t, "signal")
	})
	t.Run("health", func(t *testing.T) {
		var log syncBuffer
		var events collector[health.Event]
		p := health.New(health.Options{ShutdownDelay: 10 * time.Millisecond, DrainTimeout: time.Second, GracePeriod: time.Second,
			Logger: jsonLogger(&log), OnEvent: events.on})
		defer p.Close()
		var drained sync.WaitGroup
		drained.Add(1)
		p.Started()
		srv := httptest.NewServer(p.Handler())
		defer srv.Close()
		go func() {
			defer drained.Done()
			resp, err := http.Get(srv.URL + health.PathPreStop)
			if assert.NoError(t, err) {
				resp.Body.Close()
			}
		}()
		select {
		case <-p.Stopping():
		case <-time.After(10 * time.Second):
			t.Fatal("the preStop call did not stop the policy")
		}
		p.Draining()
		p.Drained()
		drained.Wait()
		assert.NotZero(t, checkRecords(t, "health", log.Bytes()))
		events.check(t, "health")
		kinds := map[health.EventKind]bool{}
		for _, e := range events.events {
			kinds[e.Kind] = true
		}
		for _, k := range []health.EventKind{health.EventGracePeriod, health.EventServing, health.EventPreStop,
			health.EventStopping, health.EventDraining, health.EventDrained} {
			assert.True(t, kinds[k], "no %v event", k)
		}
	})
	t.Run("reload", func(t *testing.T) {
		var log syncBuffer
		var events collector[reload.Event]
		v := reload.New(reload.Options[string]{Logger: jsonLogger(&log), OnEvent: events.on, Retain: 2})
		load := func(s string, err error) reload.Loader[string] {
			return func(context.Context) (string, reload.Info, error) { return s, reload.Info{ID: s, Source: "test"}, err }
		}
		_, err := v.Load(context.Background(), load("one", nil))
		require.NoError(t, err)
		_, err = v.Load(context.Background(), load("two", nil))
		require.NoError(t, err)
		_, err = v.Load(context.Background(), load("", errors.New("broken")))
		require.Error(t, err)
		_, err = v.Rollback()
		require.NoError(t, err)
		v.Close()
		assert.NotZero(t, checkRecords(t, "reload", log.Bytes()))
		events.check(t, "reload")
	})
	t.Run("plugin", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "greeter")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/handoff-go/handoff/examples/pluginhost/plugin").CombinedOutput()
		require.NoError(t, err, "%s", out)
		var log syncBuffer
		var events collector[plugin.Event]
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		m, err := plugin.New(ctx, plugin.Options[greeter.Greeter]{
			Handshake: greeter.Handshake,
			Plugins:   greeter.Plugins(nil),
			Path:      bin,
			Logger:    jsonLogger(&log),
			OnEvent:   events.on,
		})
		require.NoError(t, err)
		require.NoError(t, m.Reload(ctx))
		require.NoError(t, m.Close())
		assert.NotZero(t, checkRecords(t, "plugin", log.Bytes()))
		events.check(t, "plugin")
	})
	t.Run("flags", func(t *testing.T) {
		var log syncBuffer
		var events collector[reload.Event]
		dir := t.TempDir()
		file := filepath.Join(dir, "flags.json")
		var reg flags.Registry
		reg.Bool(flags.Def{Name: "new-checkout", Description: "the new checkout", Owner: "team", RemoveBy: "2099-01-01"}, false)
		require.NoError(t, os.WriteFile(file, []byte(`{"new-checkout": {"percent": 10}}`), 0o644))
		set := flags.New(&reg, file, flags.Options{Logger: jsonLogger(&log), OnEvent: events.on})
		require.NoError(t, set.Reload(context.Background()))
		require.NoError(t, os.WriteFile(file, []byte(`{"new-checkout": {"percent": "ten"}}`), 0o644))
		require.Error(t, set.Reload(context.Background()), "a bad file is refused")
		require.NoError(t, set.Close())
		assert.NotZero(t, checkRecords(t, "flags", log.Bytes()))
		events.check(t, "flags")
	})
	t.Run("bundle", func(t *testing.T) {
		var log syncBuffer
		var events collector[reload.Event]
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "index.html"), []byte("<p>hi</p>"), 0o644))
		h := bundle.New(dir, bundle.Options{Logger: jsonLogger(&log), OnEvent: events.on})
		require.NoError(t, h.Reload(context.Background()))
		require.NoError(t, h.Close())
		assert.NotZero(t, checkRecords(t, "bundle", log.Bytes()))
		events.check(t, "bundle")
	})
}

// An Upgrader exists once per process: the first run of the test records
// its log and events, and later runs (-count) check the same.
var (
	upgraderOnce   sync.Once
	upgraderLog    []byte
	upgraderEvents collector[upgrader.Event]
	upgraderErr    error
)

func upgraderRun(t *testing.T) ([]byte, *collector[upgrader.Event]) {
	t.Helper()
	upgraderOnce.Do(func() {
		var log syncBuffer
		dir, err := os.MkdirTemp("", "handoff-conventions-")
		if err != nil {
			upgraderErr = err
			return
		}
		defer os.RemoveAll(dir)
		upgraderErr = func() error {
			u, err := upgrader.New(upgrader.Options{Logger: jsonLogger(&log), OnEvent: upgraderEvents.on,
				PIDFile: filepath.Join(dir, "pid")})
			if err != nil {
				return err
			}
			ln, err := u.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: http.NotFoundHandler()}
			listener.ConfigureServer(srv)
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ln) }()
			if err := u.Ready(context.Background()); err != nil {
				return err
			}
			u.Stop()
			if _, err := u.Drain(context.Background()); err != nil {
				return err
			}
			if err := srv.Shutdown(context.Background()); err != nil {
				return err
			}
			<-done
			return u.Close()
		}()
		upgraderLog = log.Bytes()
	})
	require.NoError(t, upgraderErr)
	return upgraderLog, &upgraderEvents
}

// TestConventionsOptions checks the shape of every package's Options: a
// Logger *slog.Logger, and an OnEvent func(Event) where the package
// reports events; and that sentinel errors name their package.
func TestConventionsOptions(t *testing.T) {
	loggerType := reflect.TypeFor[*slog.Logger]()
	for _, o := range []struct {
		pkg     string
		typ     reflect.Type
		onEvent reflect.Type // nil: the package has no events
	}{
		{"handoff", reflect.TypeFor[handoff.Options](), reflect.TypeFor[func(upgrader.Event)]()},
		{"upgrader", reflect.TypeFor[upgrader.Options](), reflect.TypeFor[func(upgrader.Event)]()},
		{"listener", reflect.TypeFor[listener.Options](), nil},
		{"signal", reflect.TypeFor[signal.Options](), reflect.TypeFor[func(signal.Event)]()},
		{"health", reflect.TypeFor[health.Options](), reflect.TypeFor[func(health.Event)]()},
		{"reload", reflect.TypeFor[reload.Options[string]](), reflect.TypeFor[func(reload.Event)]()},
		{"bundle", reflect.TypeFor[bundle.Options](), reflect.TypeFor[func(reload.Event)]()},
		{"flags", reflect.TypeFor[flags.Options](), reflect.TypeFor[func(reload.Event)]()},
	} {
		f, ok := o.typ.FieldByName("Logger")
		if assert.True(t, ok, "%s.Options has no Logger", o.pkg) {
			assert.Equal(t, loggerType, f.Type, "%s.Options.Logger", o.pkg)
		}
		if o.onEvent == nil {
			continue
		}
		f, ok = o.typ.FieldByName("OnEvent")
		if assert.True(t, ok, "%s.Options has no OnEvent", o.pkg) {
			assert.Equal(t, o.onEvent, f.Type, "%s.Options.OnEvent", o.pkg)
		}
	}
	for pkg, errs := range map[string][]error{
		"handoff": {handoff.ErrContainerInit},
		"health":  {health.ErrPreStop, health.ErrGracePeriod},
	} {
		for _, err := range errs {
			assert.True(t, strings.HasPrefix(err.Error(), pkg+": "), "%q does not name its package %s", err, pkg)
		}
	}
}
