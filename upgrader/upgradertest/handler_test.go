package upgradertest_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// TestHandler asks every endpoint of Handler over HTTP/1.1, HTTP/2 over TLS
// and h2c, with net/http's client.
func TestHandler(t *testing.T) {
	s := startServer(t, upgradertest.Handler(), nil)
	pid := os.Getpid()
	transports := []struct {
		name  string
		base  string
		proto int
		tr    func(p *http.Protocols) *http.Transport
	}{
		{"http1", "http://" + s.addr, 1, func(p *http.Protocols) *http.Transport {
			p.SetHTTP1(true)
			return &http.Transport{Protocols: p}
		}},
		{"h2", "https://" + s.tlsAddr, 2, func(p *http.Protocols) *http.Transport {
			p.SetHTTP2(true)
			return &http.Transport{Protocols: p, TLSClientConfig: s.clientTLS}
		}},
		{"h2c", "http://" + s.addr, 2, func(p *http.Protocols) *http.Transport {
			p.SetUnencryptedHTTP2(true)
			return &http.Transport{Protocols: p}
		}},
	}
	endpoints := []struct {
		path    string
		want    string
		minTime time.Duration
	}{
		{"/", fmt.Sprintf("pid %d generation 0\n", pid), 0},
		{"/anything/else", fmt.Sprintf("pid %d generation 0\n", pid), 0},
		{"/pid", fmt.Sprintf("%d\n", pid), 0},
		{"/healthz", "ok\n", 0},
		{"/slow?ms=50", fmt.Sprintf("slow 50 ms pid %d\n", pid), 50 * time.Millisecond},
		{"/slow?ms=-3", fmt.Sprintf("slow 0 ms pid %d\n", pid), 0},
		{"/slow", fmt.Sprintf("slow 0 ms pid %d\n", pid), 0},
		{"/stream?s=0.25", fmt.Sprintf("line 0 pid %[1]d\nline 1 pid %[1]d\nline 2 pid %[1]d\ndone\n", pid), 200 * time.Millisecond},
		{"/stream?s=0", "done\n", 0},
		{"/stream?s=NaN", "done\n", 0},
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			transport := tr.tr(new(http.Protocols))
			defer transport.CloseIdleConnections()
			client := &http.Client{Transport: transport, Timeout: waitTimeout}
			for _, e := range endpoints {
				start := time.Now()
				resp, err := client.Get(tr.base + e.path)
				require.NoError(t, err, e.path)
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err, e.path)
				assert.Equal(t, http.StatusOK, resp.StatusCode, e.path)
				assert.Equal(t, tr.proto, resp.ProtoMajor, e.path)
				assert.Equal(t, e.want, string(body), e.path)
				assert.GreaterOrEqual(t, time.Since(start), e.minTime, e.path)
			}
		})
	}
}

// TestHandlerStreamFlushes reads the first line of a long stream before it
// ends: each line is flushed as it is written.
func TestHandlerStreamFlushes(t *testing.T) {
	s := startServer(t, upgradertest.Handler(), nil)
	for _, tr := range []struct {
		name string
		url  string
		tr   *http.Transport
	}{
		{"http1", "http://" + s.addr, &http.Transport{}},
		{"h2", "https://" + s.tlsAddr, &http.Transport{TLSClientConfig: s.clientTLS, ForceAttemptHTTP2: true}},
	} {
		t.Run(tr.name, func(t *testing.T) {
			defer tr.tr.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, "GET", tr.url+"/stream?s=600", nil)
			require.NoError(t, err)
			resp, err := tr.tr.RoundTrip(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			buf := make([]byte, 64)
			n, err := resp.Body.Read(buf)
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(string(buf[:n]), "line 0 pid "), "%q", buf[:n])
		})
	}
}

// TestHandlerEndsWithTheRequest: /slow and /stream return as soon as the
// request's context ends, without their last line.
func TestHandlerEndsWithTheRequest(t *testing.T) {
	h := upgradertest.Handler()
	for _, path := range []string{"/slow?ms=60000", "/stream?s=600"} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil).WithContext(ctx))
		}()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			t.Fatalf("%s did not end with its request", path)
		}
		assert.NotContains(t, rec.Body.String(), "slow", path)
		assert.NotContains(t, rec.Body.String(), "done", path)
	}
}

// TestWriteCert: the certificate loads as a key pair and the pool trusts
// it for both loopback addresses.
func TestWriteCert(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool, err := upgradertest.WriteCert(dir)
	require.NoError(t, err)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	require.NoError(t, err)
	st, err := os.Stat(keyFile)
	require.NoError(t, err)
	if runtime.GOOS != "windows" {
		assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	}
	for _, host := range []string{"127.0.0.1", "::1", "localhost"} {
		_, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool})
		assert.NoError(t, err, host)
	}
}
