package upgradertest

import (
	"fmt"
	"net/http"
	"strings"
)

// Request is a request of the load for a server that does not answer as
// Handler does (see Config.Requests): a method, a path and, if need be,
// header fields and a body.
type Request struct {
	// Method of the request. Default GET.
	Method string
	// Path of the request, with its query: "/api/items?limit=5".
	Path string
	// Header holds fields sent besides the ones the clients set (Host or
	// :authority, Content-Length, and Connection: close for NewConn and
	// Stream). Default none.
	Header http.Header
	// Body is sent with a Content-Length (HTTP/1.1), or as DATA frames
	// (HTTP/2), where it is at most 65,535 bytes: the HTTP/2 clients send
	// it at once, without waiting for WINDOW_UPDATE, so keep the bodies in
	// flight on one connection within the server's connection window too
	// (65,535 bytes unless the server grants more, as net/http does).
	// Default none.
	Body []byte
}

func (r Request) String() string {
	m := r.Method
	if m == "" {
		m = http.MethodGet
	}
	return m + " " + r.Path
}

// maxH2Body bounds a request body on HTTP/2: the clients send it at once,
// within the initial flow-control window of a stream (RFC 9113 §6.9.2).
const maxH2Body = 65535

// request returns the request a worker sends for op, the n-th it sends:
// Config.Requests in turn, SlowRequest or StreamRequest, or the default
// GET of Handler's endpoints.
func (c Config) request(op Op, n int) Request {
	switch {
	case op == OpPID && len(c.Requests) > 0:
		return c.Requests[n%len(c.Requests)]
	case op == OpSlow && c.SlowRequest != nil:
		return *c.SlowRequest
	case op == OpStream && c.StreamRequest != nil:
		return *c.StreamRequest
	}
	return Request{Method: http.MethodGet, Path: c.path(op)}
}

// custom reports whether the requests for op are the caller's (Requests,
// SlowRequest, StreamRequest) rather than Handler's endpoints.
func (c Config) custom(op Op) bool {
	switch op {
	case OpSlow:
		return c.SlowRequest != nil
	case OpStream:
		return c.StreamRequest != nil
	}
	return len(c.Requests) > 0
}

// check classifies a complete response to a request for op: for the
// caller's requests, any 2xx status is OK and the body is not looked at;
// for Handler's endpoints the status must be 200 and the body is checked
// by checkBody.
func (c Config) check(op Op, status int, body string) (Class, string, error) {
	if c.custom(op) {
		if status < 200 || status > 299 {
			return Non2xx, "", fmt.Errorf("status %d", status)
		}
		return OK, "", nil
	}
	if status != http.StatusOK {
		return Non2xx, "", fmt.Errorf("status %d", status)
	}
	return checkBody(op, body)
}

// h1Request writes r as an HTTP/1.1 request, with Connection: close if
// closeConn.
func (c Config) h1Request(r Request, closeConn bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", r.methodOrGet(), r.Path, c.Host)
	if closeConn {
		b.WriteString("Connection: close\r\n")
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if len(r.Body) > 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(r.Body))
	}
	b.WriteString("\r\n")
	b.Write(r.Body)
	return b.String()
}

func (r Request) methodOrGet() string {
	if r.Method == "" {
		return http.MethodGet
	}
	return r.Method
}
