package admin

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/handoff-go/handoff/metrics"
)

// Defaults for Options.
const (
	// DefaultStreamFor bounds one live-update stream (/events); the page
	// reconnects at once, so a stream never holds a connection for long.
	DefaultStreamFor = 2 * time.Minute
	// DefaultRefresh is how often a stream sends the status when nothing
	// changed (connection counts move without an event).
	DefaultRefresh = time.Second
)

// ErrReadOnly is the refusal of every control of a Handler without an
// Authorize hook.
var ErrReadOnly = errors.New("admin: read-only: the service gave no Authorize hook")

// Control is what a control request asks for, as Authorize sees it.
type Control struct {
	// Action is "upgrade", "rollback" or "rollout".
	Action string
	// Kind and Name name the component of a rollback (bundle, plugin,
	// flags) or the flag set of a rollout.
	Kind metrics.Kind
	Name string
	// Flag and Rollout are a rollout's flag and its new rollout: a
	// percentage for a boolean flag ("25"), weights for variants
	// ("blue=50,green=50").
	Flag    string
	Rollout string
}

func (c Control) target() string {
	switch {
	case c.Flag != "":
		return fmt.Sprintf("%s %s/%s=%s", c.Kind, c.Name, c.Flag, c.Rollout)
	case c.Name != "":
		return fmt.Sprintf("%s %s", c.Kind, c.Name)
	}
	return ""
}

// Options configure a Handler. Recorder is required; the zero value of
// every other field means its default.
type Options struct {
	// Recorder is where the status comes from, and the components and
	// Upgrader the controls act on.
	Recorder *metrics.Recorder

	// Authorize decides whether a control request may run: nil lets it,
	// an error refuses it (403, with the error's text). It is called for
	// every control request, after the cross-origin check, with the
	// request (its credentials: a header, a cookie, a client certificate)
	// and what it asks. Nil means the page is read-only: it shows no
	// control and every control request is refused with ErrReadOnly.
	Authorize func(r *http.Request, c Control) error

	// Title names the service on the page. Default "handoff".
	Title string

	// StreamFor bounds a live-update stream. Default DefaultStreamFor.
	StreamFor time.Duration
	// Refresh is the period of a stream's updates when nothing changed.
	// Default DefaultRefresh.
	Refresh time.Duration

	// Logger receives a record per Event. Nil discards them.
	Logger *slog.Logger
	// OnEvent, if set, is called synchronously for every Event; it must
	// not block.
	OnEvent func(Event)
}

// Handler serves the admin page and its API. Mount it on an internal
// port, at the root or under a prefix with http.StripPrefix (the page
// uses relative URLs):
//
//	GET  /          the page (HTML; styles and script inline, no external asset)
//	GET  /status    the status (JSON: metrics.Status, and "controls")
//	GET  /events    the status as server-sent events, at each change
//	GET  /metrics   the Recorder's metrics (Prometheus)
//	POST /upgrade   upgrade the binary (returns when it committed or rolled back)
//	POST /rollback  kind, name: roll a bundle, plugin or flag set back
//	POST /rollout   name, flag, rollout: change a flag's rollout in its values file
//
// Control requests (POST) are refused with 403 when they come from
// another origin (http.CrossOriginProtection: Sec-Fetch-Site, Origin) and
// when Options.Authorize refuses them or is nil. A Handler is safe for
// concurrent use.
type Handler struct {
	opts    Options
	log     *slog.Logger
	rec     *metrics.Recorder
	metrics http.Handler
	cop     *http.CrossOriginProtection
	mux     *http.ServeMux
}

//go:embed page.html
var page []byte

// New returns a Handler. It panics without opts.Recorder.
func New(opts Options) *Handler {
	if opts.Recorder == nil {
		panic("admin: Options.Recorder is nil")
	}
	if opts.Title == "" {
		opts.Title = "handoff"
	}
	if opts.StreamFor <= 0 {
		opts.StreamFor = DefaultStreamFor
	}
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{opts: opts, log: opts.Logger, rec: opts.Recorder, metrics: opts.Recorder.Handler(),
		cop: http.NewCrossOriginProtection(), mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /{$}", h.servePage)
	h.mux.HandleFunc("GET /status", h.serveStatus)
	h.mux.HandleFunc("GET /events", h.serveEvents)
	h.mux.Handle("GET /metrics", h.metrics)
	h.mux.HandleFunc("POST /upgrade", h.control("upgrade", h.upgrade))
	h.mux.HandleFunc("POST /rollback", h.control("rollback", h.rollback))
	h.mux.HandleFunc("POST /rollout", h.control("rollout", h.rollout))
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) servePage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	// The page loads nothing from anywhere: no script, style or image but
	// its own inline ones, no frame.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	_, _ = w.Write([]byte(strings.Replace(string(page), "{{TITLE}}", htmlEscape(h.opts.Title), 2)))
}

// pageStatus is what /status and /events send.
type pageStatus struct {
	metrics.Status
	Title    string `json:"title"`
	Controls bool   `json:"controls"`
}

func (h *Handler) status() pageStatus {
	return pageStatus{Status: h.rec.Status(), Title: h.opts.Title, Controls: h.opts.Authorize != nil}
}

func (h *Handler) serveStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, h.status())
}

// serveEvents streams the status, at once, at each change and every
// Refresh, until the client goes, StreamFor has passed, or this process
// no longer takes new connections (it handed over, drains or stops, or
// its successor accepts during an upgrade): then the stream ends, so that
// the page's EventSource reconnects to the generation that accepts, and so
// that no stream holds back this generation's drain.
func (h *Handler) serveEvents(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "admin: streaming not supported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	if !accepting(h.rec.Status()) {
		// The browser would reuse this keep-alive connection, which only
		// this process serves, for its next try: close it, so that the
		// next one reaches the generation that accepts.
		w.Header().Set("Connection", "close")
	}
	_, _ = fmt.Fprint(w, "retry: 250\n\n")
	end := time.NewTimer(h.opts.StreamFor)
	defer end.Stop()
	tick := time.NewTicker(h.opts.Refresh)
	defer tick.Stop()
	for {
		changed := h.rec.Changed()
		st := h.status()
		b, err := json.Marshal(st)
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return
		}
		flusher.Flush()
		if !accepting(st.Status) {
			return
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-end.C:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// accepting reports whether the process takes new connections: not once
// it handed over, drains or stops, nor while its successor accepts.
func accepting(s metrics.Status) bool {
	switch s.Process.State {
	case metrics.StateHandedOver, metrics.StateDraining, metrics.StateStopping:
		return false
	case metrics.StateUpgrading:
		in := s.Upgrades.InProgress
		return in == nil || in.Phase == metrics.PhaseSpawn || in.Phase == metrics.PhaseReady
	}
	return true
}

// control wraps a control's handler with the checks every control
// request passes: same origin, then Authorize.
func (h *Handler) control(action string, run func(r *http.Request, c Control) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := Control{Action: action, Kind: metrics.Kind(r.FormValue("kind")), Name: r.FormValue("name"),
			Flag: r.FormValue("flag"), Rollout: r.FormValue("rollout")}
		if action == "rollout" {
			c.Kind = metrics.KindFlags
		}
		refuse := func(err error) {
			h.emit(Event{Kind: EventRefused, Control: c, Remote: r.RemoteAddr, Err: err})
			writeJSON(w, http.StatusForbidden, map[string]string{"error": err.Error()})
		}
		if err := h.cop.Check(r); err != nil {
			refuse(fmt.Errorf("admin: %w", err))
			return
		}
		if h.opts.Authorize == nil {
			refuse(ErrReadOnly)
			return
		}
		if err := h.opts.Authorize(r, c); err != nil {
			refuse(err)
			return
		}
		start := time.Now()
		h.emit(Event{Kind: EventStarted, Control: c, Remote: r.RemoteAddr})
		result, err := run(r, c)
		h.emit(Event{Kind: EventFinished, Control: c, Remote: r.RemoteAddr, Duration: time.Since(start), Result: result, Err: err})
		var bad *badRequest
		switch {
		case errors.As(err, &bad):
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		case err != nil:
			writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		default:
			writeJSON(w, http.StatusOK, map[string]string{"result": result})
		}
	}
}

// badRequest is a control request that cannot be carried out as asked.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return "admin: " + e.msg }

func badRequestf(format string, args ...any) error {
	return &badRequest{fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#39;").Replace(s)
}
