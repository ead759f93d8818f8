package health

import (
	"fmt"
	"net/http"
	"time"
)

// The paths Handler serves.
const (
	PathLive    = "/livez"
	PathReady   = "/readyz"
	PathStartup = "/startupz"
	PathPreStop = "/prestop"
)

// Handler returns the probes and the preStop endpoint:
//
//   - GET /livez: 200 while the process answers;
//   - GET /startupz: 503 until Started, then 200;
//   - GET /readyz: 200 when ready (see the package documentation), else
//     503 with the reason;
//   - GET or POST /prestop: Stop (cause ErrPreStop), then wait until the
//     drain is over (200) or until ShutdownDelay + DrainTimeout +
//     PreStopSlack after the first Stop (503), or until the caller goes.
//
// Every answer is a line of text. Serve it on a port of its own (see the
// package documentation). The handler is safe for concurrent use.
func (p *Policy) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathLive, func(w http.ResponseWriter, r *http.Request) {
		answer(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET "+PathStartup, func(w http.ResponseWriter, r *http.Request) {
		if p.Phase() == PhaseStarting {
			answer(w, http.StatusServiceUnavailable, "starting")
			return
		}
		answer(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET "+PathReady, func(w http.ResponseWriter, r *http.Request) {
		if err := p.ready(r.Context()); err != nil {
			answer(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
		answer(w, http.StatusOK, "ok")
	})
	preStop := func(w http.ResponseWriter, r *http.Request) {
		p.preStop()
		p.Stop(ErrPreStop)
		t := time.NewTimer(time.Until(p.preStopDeadline()))
		defer t.Stop()
		select {
		case <-p.done:
			answer(w, http.StatusOK, "drained")
		case <-t.C:
			answer(w, http.StatusServiceUnavailable, "the drain is not over by its deadline")
		case <-r.Context().Done():
		}
	}
	mux.HandleFunc("GET "+PathPreStop, preStop)
	mux.HandleFunc("POST "+PathPreStop, preStop)
	return mux
}

func answer(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

// Wrap returns h with the termination policy's part in every response:
// during the shutdown delay (PhaseDelaying), unless KeepAliveDuringDelay,
// each response carries "Connection: close", so that net/http closes an
// HTTP/1 connection after it and sends a graceful GOAWAY on an HTTP/2 one
// (its open streams finish; the client opens a new connection for the
// next). It costs one atomic load per request; the handler it returns is
// safe for concurrent use if h is. handoff.Run wraps every http.Server's
// handler with it.
func (p *Policy) Wrap(h http.Handler) http.Handler {
	if p.opts.KeepAliveDuringDelay {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if Phase(p.phase.Load()) == PhaseDelaying {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}
