//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// answer is the outcome of one probe.
type answer struct {
	ok    bool      // a 2xx response, read whole
	owner int       // the process that answered; 0 if unknown
	end   time.Time // when the response ended
	err   error
}

// probe sends r on a new keep-alive connection, reads the whole response
// and, before it closes the connection, finds the process that holds the
// server's end of it: the one that answered. The connection is kept alive
// (no Connection: close) so that the server does not close its end before
// the lookup. hints are the pids to look at first (see procs.owner).
func (p *procs) probe(addr, host string, r upgradertest.Request, timeout time.Duration, hints []int, extra int) answer {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return answer{err: err}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	req, err := http.NewRequest(r.Method, "http://"+host+r.Path, bytes.NewReader(r.Body))
	if err != nil {
		return answer{err: err}
	}
	for k, vs := range r.Header {
		req.Header[k] = vs
	}
	if err := req.Write(c); err != nil {
		return answer{err: err}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: r.Method})
	if err != nil {
		return answer{err: err}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	a := answer{end: time.Now()}
	switch {
	case err != nil:
		a.err = err
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		a.err = fmt.Errorf("%s: status %s", r, resp.Status)
	default:
		a.ok = true
	}
	server, err1 := netip.ParseAddrPort(c.RemoteAddr().String())
	client, err2 := netip.ParseAddrPort(c.LocalAddr().String())
	if err1 == nil && err2 == nil && p != nil {
		a.owner = p.owner(server, client, hints, extra)
	}
	return a
}
