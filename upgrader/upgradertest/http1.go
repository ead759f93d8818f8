package upgradertest

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

// h1Worker is the client of one HTTP/1.1 worker (kinds KeepAliveChecked to
// Stream): raw HTTP/1.1 over one connection at a time.
type h1Worker struct {
	cfg       Config
	kind      Kind
	conn      net.Conn
	br        *bufio.Reader
	sent      int    // requests sent, to take Config.Requests in turn
	local     string // the client's address of conn, for Sample.Conn
	dialled   bool   // a connection was dialled before
	redialled bool   // the last request dialled again (a keep-alive kind)
}

func (w *h1Worker) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

func (w *h1Worker) do() (Class, string, error) {
	reused := false
	w.redialled = false
	switch w.kind {
	case NewConn, Stream:
		w.close()
	case KeepAliveChecked, Slow:
		if w.conn != nil && closedByPeer(w.conn) {
			w.close()
		}
	}
	if w.conn != nil {
		reused = true
	} else {
		w.redialled = w.dialled && w.kind != NewConn && w.kind != Stream
		w.dialled = true
		c, err := net.DialTimeout(w.cfg.Network, w.cfg.Addr, w.cfg.Timeout)
		if err != nil {
			return classify(err, false), "", err
		}
		w.conn, w.br = c, bufio.NewReader(c)
	}
	w.local = w.conn.LocalAddr().String()
	op := opOf(w.kind)
	_ = w.conn.SetDeadline(time.Now().Add(w.cfg.timeout(op)))
	r := w.cfg.request(op, w.sent)
	w.sent++
	if _, err := io.WriteString(w.conn, w.cfg.h1Request(r, w.kind == NewConn || w.kind == Stream)); err != nil {
		w.close()
		return classify(err, reused), "", err
	}
	resp, err := http.ReadResponse(w.br, &http.Request{Method: r.methodOrGet()})
	if err != nil {
		w.close()
		return classify(err, reused), "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		w.close()
		if w.kind == Stream {
			return Truncated, "", err
		}
		return classify(err, false), "", err
	}
	if resp.Close {
		w.close()
	} else {
		_ = w.conn.SetDeadline(time.Time{})
	}
	return w.cfg.check(op, resp.StatusCode, string(body))
}

// closedByPeer reports whether the server has closed c: a read that returns
// at once with EOF (or an error) rather than timing out.
func closedByPeer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
	var b [1]byte
	_, err := c.Read(b[:])
	_ = c.SetReadDeadline(time.Time{})
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true // EOF, reset, or unexpected data: do not reuse
}

func classify(err error, reused bool) Class {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return Reset
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return Timeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		if reused {
			return EOFReused
		}
		return EOF
	}
	return Other
}
