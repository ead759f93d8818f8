package upgradertest

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"
)

// Handler returns the handler of the test server: the endpoints the load of
// this package asks for, answered with the pid of the process, so that each
// response says which generation served it. It serves HTTP/1.1, HTTP/2 over
// TLS and h2c alike, and is safe for concurrent use.
//
//   - GET / answers "pid <pid> generation <gen>\n", where gen is the
//     generation of the Upgrader that upgrader.FromContext finds in the
//     request's context (0 when there is none). Every path no other endpoint
//     takes is answered this way.
//   - GET /pid answers "<pid>\n".
//   - GET /slow?ms=N answers "slow N ms pid <pid>\n" after N ms (N is bounded
//     to 0..60000); it returns with no body if the request's context ends
//     first.
//   - GET /stream?s=N writes "line <i> pid <pid>\n" every 100 ms for N
//     seconds (N is bounded to 0..600, fractions allowed), flushing each
//     line, then a last line "done\n"; it stops, with no "done", if the
//     request's context ends first.
//   - GET /healthz answers "ok\n".
func Handler() http.Handler {
	pid := os.Getpid()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pid %d generation %d\n", pid, generation(r.Context()))
	})
	mux.HandleFunc("/pid", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%d\n", pid)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		ms = min(max(ms, 0), 60_000)
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "slow %d ms pid %d\n", ms, pid)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		s, _ := strconv.ParseFloat(r.URL.Query().Get("s"), 64)
		if !(s > 0) { // negative, or NaN, which min and max would keep
			s = 0
		}
		s = min(s, 600)
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		end := time.Now().Add(time.Duration(s * float64(time.Second)))
		for i := 0; time.Now().Before(end); i++ {
			fmt.Fprintf(w, "line %d pid %d\n", i, pid)
			if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return // the client is gone
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
