package listener_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/handoff-go/handoff/listener"
)

// Serve HTTP on a tracked listener, then drain it and shut the server down:
// Drain first (stop accepting, let keep-alive clients finish, close idle
// connections after the grace), Shutdown second (nothing is left for it).
func Example() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	l := listener.Wrap(ln, listener.Options{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	})}
	listener.ConfigureServer(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	// A client leaves a keep-alive connection open.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))

	// Time to go.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stats, err := l.Drain(ctx)
	fmt.Printf("drained %d connection(s), %d closed idle, %d forced, err=%v\n",
		stats.Conns, stats.ClosedIdle, stats.Forced, err)
	fmt.Println("shutdown:", srv.Shutdown(ctx))
	fmt.Println("serve:", <-served)
	// Output:
	// hello
	// drained 1 connection(s), 1 closed idle, 0 forced, err=<nil>
	// shutdown: <nil>
	// serve: http: Server closed
}

// A raw TCP server (no net/http) watches Draining to finish its
// connections; Drain waits for them to close.
func ExampleListener_Draining() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	l := listener.Wrap(ln, listener.Options{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return // the listener was closed
			}
			wg.Go(func() {
				defer c.Close()
				io.WriteString(c, "hello\n")
				<-l.Draining() // a real server would also serve until then
				io.WriteString(c, "goodbye\n")
			})
		}
	})

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	line, _ := r.ReadString('\n')
	fmt.Print(line)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stats, err := l.Drain(ctx)
	fmt.Printf("drained %d connection(s), err=%v\n", stats.Conns, err)
	line, _ = r.ReadString('\n')
	fmt.Print(line)
	l.Close()
	wg.Wait()
	// Output:
	// hello
	// drained 1 connection(s), err=<nil>
	// goodbye
}

// During an upgrade two processes share the socket. The old one pauses
// (it could still resume on a rollback) and the new one takes every new
// connection; once the new one is committed, the old one drains.
func ExampleListener_Pause() {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		log.Fatal(err)
	}
	old := listener.Wrap(ln, listener.Options{})
	defer old.Close()

	// What the next process inherits: a dup of the socket.
	f, err := ln.File()
	if err != nil {
		log.Fatal(err)
	}
	ln2, err := net.FileListener(f)
	f.Close()
	if err != nil {
		log.Fatal(err)
	}
	next := listener.Wrap(ln2, listener.Options{})
	defer next.Close()

	old.Pause() // the old process stops taking connections, without closing
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	sc, err := next.Accept() // the next process gets it
	if err != nil {
		log.Fatal(err)
	}
	defer sc.Close()
	fmt.Println("old accepted:", old.Counts().Accepted, "next accepted:", next.Counts().Accepted)
	// Output:
	// old accepted: 0 next accepted: 1
}

// A server that speaks HTTP/2 (here over TLS) drains in this order: Drain
// in a goroutine, Await until only HTTP/2 connections are left (the idle
// closer never closes those: without a GOAWAY, their clients could lose a
// request), then Shutdown, which sends each of them a GOAWAY, lets its
// streams finish and closes it; Drain returns after that.
func ExampleListener_Await() {
	ln, err := net.Listen("tcp", ":8443")
	if err != nil {
		log.Fatal(err)
	}
	l := listener.Wrap(ln, listener.Options{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	})}
	listener.ConfigureServer(srv)
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(l, "cert.pem", "key.pem") }() // HTTP/2 and HTTP/1.1

	// ... time to go:
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type drainResult struct {
		stats listener.DrainStats
		err   error
	}
	drained := make(chan drainResult, 1)
	go func() {
		stats, err := l.Drain(ctx)
		drained <- drainResult{stats, err}
	}()
	onlyHTTP2 := func(c listener.Counts) bool { return c.Open()-c.HTTP2 == 0 }
	if err := l.Await(ctx, onlyHTTP2); err != nil {
		log.Print(err) // the deadline: Drain force-closes what is left
	}
	if err := srv.Shutdown(ctx); err != nil { // a GOAWAY to each HTTP/2 connection
		log.Print(err)
	}
	d := <-drained
	fmt.Printf("drained %d connection(s), err=%v\n", d.stats.Conns, d.err)
	fmt.Println("serve:", <-served)
}
