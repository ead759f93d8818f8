package upgradertest_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// Put the acceptance mix on a server while it upgrades, then count what
// failed. The server must answer /pid, /slow?ms=N and /stream?s=N as
// Handler does. Compiled, not run: it needs a server.
func Example() {
	cfg := upgradertest.MixedConfig("127.0.0.1:8080")
	stop := upgradertest.Start(context.Background(), cfg)
	time.Sleep(10 * time.Second) // upgrade the server here
	res := stop()
	fmt.Println(res.Summary())
	if err := res.Check(cfg); err != nil {
		fmt.Println(err)
	}
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
