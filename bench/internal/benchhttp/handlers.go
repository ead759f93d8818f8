// Package benchhttp holds the HTTP handlers of the benchmark's comparison
// servers (bench/tableflip-server and bench/naive-server). They answer the
// way examples/httpserver does, byte for byte on the paths the load uses,
// so that the load generator (upgrader/upgradertest) reads the pid that
// answered from every target in the same way.
package benchhttp

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Routes returns the handler of a server whose process id is pid:
// / and /pid (the pid), /slow?ms=N (answers after N ms), /stream?s=N (a line
// every 100 ms for N seconds, then a last line "done") and /healthz. It is
// safe for concurrent use.
func Routes(pid int) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pid %d\n", pid)
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
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "slow %d ms pid %d\n", ms, pid)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
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
