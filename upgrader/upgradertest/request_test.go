package upgradertest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// customHandler answers the requests of TestCustomRequests as a server that
// knows nothing of Handler would: POST /items with the body "item" and the
// header X-Key: k is 201, HEAD /items 204 with a Content-Length it does not
// send, GET /report after 20 ms, GET /events a chunked stream without any
// "done" line; GET /cut cuts its chunked stream short; anything else 404.
func customHandler(c *counter) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.add(r.Method+" "+r.URL.Path+" "+r.Host, 1)
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/items":
			b, _ := io.ReadAll(r.Body)
			if string(b) != "item" || r.Header.Get("X-Key") != "k" {
				http.Error(w, fmt.Sprintf("body %q key %q", b, r.Header.Get("X-Key")), http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusCreated)
		case r.Method == http.MethodHead && r.URL.Path == "/items":
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(http.StatusNoContent)
		case r.URL.Path == "/report":
			time.Sleep(20 * time.Millisecond)
			fmt.Fprintln(w, "report")
		case r.URL.Path == "/events" || r.URL.Path == "/cut":
			for i := range 3 {
				fmt.Fprintf(w, "event %d\n", i)
				w.(http.Flusher).Flush()
			}
			if r.URL.Path == "/cut" {
				panic(http.ErrAbortHandler) // ends the response without its last chunk
			}
		default:
			http.NotFound(w, r)
		}
	})
}

// TestCustomRequests: Config.Requests, SlowRequest and StreamRequest replace
// Handler's endpoints for every HTTP kind; a 2xx answers OK with no pid, a
// 404 is Non2xx, and a stream cut short is Truncated.
func TestCustomRequests(t *testing.T) {
	c := newCounter()
	s := startServer(t, customHandler(c), nil)
	header := http.Header{"X-Key": {"k"}}
	cfg := s.config(map[upgradertest.Kind]int{
		upgradertest.KeepAliveChecked: 1, upgradertest.KeepAliveBlind: 1, upgradertest.NewConn: 1,
		upgradertest.Slow: 1, upgradertest.Stream: 1, upgradertest.H2TLS: 1, upgradertest.H2C: 1,
	})
	cfg.Requests = []upgradertest.Request{
		{Method: http.MethodPost, Path: "/items", Header: header, Body: []byte("item")},
		{Method: http.MethodHead, Path: "/items"},
	}
	cfg.SlowRequest = &upgradertest.Request{Path: "/report"}
	cfg.StreamRequest = &upgradertest.Request{Path: "/events"}
	cfg.Host = "example.test"
	cfg.H2Streams, cfg.H2Slow, cfg.H2Stream = 4, 1, 1
	cfg.MaxRequests = 40
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	r := upgradertest.Run(ctx, cfg)
	assert.Zero(t, r.Failed(), "failures %v\n%s", r.Failures(), r.FirstFailures(10))
	for k := upgradertest.KeepAliveChecked; k <= upgradertest.H2C; k++ {
		if k != upgradertest.H2Idle {
			assert.NotZero(t, r.Count(k), "no %s request", k)
		}
	}
	assert.Equal(t, map[string]int{"": r.Count(-1)}, r.PIDs(), "no pid is read from a custom response")
	for _, s := range r.Samples {
		assert.NotEmpty(t, s.Conn, "%s sample without its connection", s.Kind)
	}
	for _, key := range []string{"POST /items example.test", "HEAD /items example.test", "GET /report example.test", "GET /events example.test"} {
		assert.NotZero(t, c.get(key), key)
	}
	assert.Zero(t, c.get("GET /pid example.test")+c.get("GET /pid load"), "Handler's endpoints are not asked for")

	// A 404 is Non2xx; a chunked stream cut short is Truncated (HTTP/1.1)
	// or Reset (HTTP/2: the server resets the stream).
	cfg.Workers = map[upgradertest.Kind]int{upgradertest.NewConn: 1, upgradertest.Stream: 1, upgradertest.H2C: 1}
	cfg.Requests = []upgradertest.Request{{Path: "/missing"}}
	cfg.StreamRequest = &upgradertest.Request{Path: "/cut"}
	cfg.H2Streams, cfg.H2Slow, cfg.H2Stream = 2, 0, 1
	cfg.MaxRequests = 3
	r = upgradertest.Run(ctx, cfg)
	byKind := map[string]string{}
	for _, s := range r.Samples {
		byKind[s.Kind.String()+" "+s.Op.String()] = s.Class.String()
	}
	assert.Equal(t, map[string]string{
		"new-conn pid": "non-2xx", "stream stream": "truncated", "h2c pid": "non-2xx", "h2c stream": "reset",
	}, byKind, r.FirstFailures(10))
}

// TestCustomRequestBodyTooLarge: an HTTP/2 request body over 65,535 bytes
// is refused by the client, not sent.
func TestCustomRequestBodyTooLarge(t *testing.T) {
	c := newCounter()
	s := startServer(t, customHandler(c), nil)
	cfg := s.config(map[upgradertest.Kind]int{upgradertest.H2C: 1})
	cfg.Requests = []upgradertest.Request{{Method: http.MethodPost, Path: "/items", Body: []byte(strings.Repeat("x", 70_000))}}
	cfg.H2Streams, cfg.MaxRequests = 1, 1
	r := upgradertest.Run(context.Background(), cfg)
	require.Len(t, r.Samples, 1)
	assert.Equal(t, upgradertest.Other, r.Samples[0].Class, r.Samples[0].Err)
	assert.Contains(t, r.Samples[0].Err, "at most 65535")
}
