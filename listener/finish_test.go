package listener_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"

	"github.com/handoff-go/handoff/listener"
)

// TestFinishServesBacklog: on a final stop, the connections the kernel has
// already queued are accepted and answered before the listener closes; only
// later connections are refused. Closing outright would reset the queued
// ones.
func TestFinishServesBacklog(t *testing.T) {
	l := wrap(t, listen(t), listener.Options{})
	l.Pause()
	srv := &http.Server{Handler: http.HandlerFunc(ok)}
	listener.ConfigureServer(srv)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer srv.Close()

	// Five clients connect while nothing accepts: the kernel queues them,
	// and each sends its request.
	var clients []*client
	for range 5 {
		c := dial(t, l.Addr())
		if err := c.send("/"); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	if got := l.Counts().Accepted; got != 0 {
		t.Fatalf("accepted %d while paused", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := l.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Finish(ctx); err != nil { // idempotent
		t.Fatal(err)
	}
	if got := l.Counts().Accepted; got != 5 {
		t.Errorf("Finish accepted %d queued connections, want 5", got)
	}
	for i, c := range clients {
		resp, body, err := c.recv()
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if resp.StatusCode != 200 || body != "ok" {
			t.Errorf("client %d: %s %q", i, resp.Status, body)
		}
	}
	// The socket is closed now: a new connection is refused.
	if c, err := net.Dial("tcp", l.Addr().String()); err == nil {
		c.Close()
		t.Errorf("connected after Finish")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Finish: %v, want net.ErrClosed", err)
	}
	if _, err := l.Drain(ctx); err != nil {
		t.Errorf("Drain after Finish: %v", err)
	}
	// Serve ends with the closed listener's error, as after any Close.
	if err := recvWithin(t, served, "Serve to return"); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve: %v", err)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
