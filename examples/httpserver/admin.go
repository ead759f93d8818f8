//go:build !benchmin

package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/handoff-go/handoff/admin"
	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/metrics"
	"github.com/handoff-go/handoff/signal"
	"github.com/handoff-go/handoff/upgrader"
)

// registry holds the example's one flag, shown on the admin page.
var registry flags.Registry

var newGreeting = registry.Bool(flags.Def{Name: "new-greeting", Description: "answer / with the new greeting",
	Owner: "team-examples", RemoveBy: "2099-12-31"}, false)

// observability is the admin page and the metrics of -admin-addr; all its
// methods do nothing when it is off.
type observability struct {
	rec   *metrics.Recorder
	admin *http.Server
	set   *flags.Set
}

func newObservability(c config, log *slog.Logger) (*observability, error) {
	if c.adminAddr == "" {
		return &observability{}, nil
	}
	rec, err := metrics.New(metrics.Options{})
	if err != nil {
		return nil, err
	}
	o := &observability{rec: rec}
	var authorize func(*http.Request, admin.Control) error
	if c.adminToken != "" {
		want := []byte("Bearer " + c.adminToken)
		authorize = func(r *http.Request, _ admin.Control) error {
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
				return errors.New("the admin token is needed (Authorization: Bearer TOKEN)")
			}
			return nil
		}
	}
	if c.flagsFile != "" {
		o.set = rec.NewFlags("flags", &registry, c.flagsFile, flags.Options{Logger: log})
		if err := o.set.Reload(context.Background()); err != nil {
			log.Warn("flags: the values file was refused; the defaults serve", "error", err)
		}
	}
	o.admin = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: admin.New(admin.Options{
		Recorder: rec, Title: "httpserver", Authorize: authorize, Logger: log})}
	return o, nil
}

// wrap evaluates the flag for each request (so the page has evaluations
// to count) when there is a flag set.
func (o *observability) wrap(h http.Handler) http.Handler {
	if o.set == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		snap := o.set.Snapshot()
		if newGreeting.Enabled(snap, r.RemoteAddr) {
			w.Header().Set("X-Greeting", "new")
		}
		snap.Release()
		h.ServeHTTP(w, r)
	})
}

func (o *observability) attach(u *upgrader.Upgrader) error {
	if o.rec == nil {
		return nil
	}
	return o.rec.Attach(u)
}

func (o *observability) onEvent(e upgrader.Event) {
	if o.rec != nil {
		o.rec.OnUpgraderEvent(e)
	}
}

func (o *observability) onSignal(e signal.Event) {
	if o.rec != nil {
		o.rec.OnSignalEvent(e)
	}
}

// reloader is SIGUSR2's action: the flags' values file; nil (SIGUSR2 not
// handled) without a flag set.
func (o *observability) reloader() func(context.Context) error {
	if o.set == nil {
		return nil
	}
	return o.set.Reload
}

func (o *observability) close() {
	if o.set != nil {
		o.set.Close()
	}
}
