package upgradertest_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// Put a mixed load on a server while it upgrades, then count what failed.
// The server must answer /pid, /slow?ms=N and /stream?s=N as Handler
// does. Compiled, not run: it needs a server.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := upgradertest.Run(ctx, upgradertest.Config{
		Addr: "127.0.0.1:8080",
		Workers: map[upgradertest.Kind]int{
			upgradertest.KeepAliveChecked: 4,
			upgradertest.KeepAliveBlind:   4,
			upgradertest.NewConn:          4,
			upgradertest.Slow:             2,
			upgradertest.Stream:           2,
		},
	})
	fmt.Println(res.Count(-1), "requests,", res.Failed(), "failed:", res.Failures())
	fmt.Println("p99:", res.Percentile(99, nil))
}

// Serve the test server's endpoints over HTTP/1.1 and h2c on one port, so
// that every HTTP kind of client can put load on it.
func ExampleHandler() {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Addr: "127.0.0.1:8080", Handler: upgradertest.Handler(), Protocols: &p}
	go srv.ListenAndServe()
	defer srv.Close()
}
