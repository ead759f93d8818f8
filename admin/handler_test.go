package admin_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/admin"
	"github.com/handoff-go/handoff/bundle"
	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/metrics"
)

const token = "s3cret"

func bearer(r *http.Request, _ admin.Control) error {
	if r.Header.Get("Authorization") != "Bearer "+token {
		return errors.New("admin test: a valid token is needed")
	}
	return nil
}

type fixture struct {
	rec  *metrics.Recorder
	srv  *httptest.Server
	ui   *bundle.Handler
	set  *flags.Set
	path string // the flags' values file
	dir  string // the bundle's directory
	log  *syncBuffer
	evs  *events
}

type events struct {
	mu sync.Mutex
	l  []admin.Event
}

func (e *events) on(ev admin.Event) { e.mu.Lock(); e.l = append(e.l, ev); e.mu.Unlock() }
func (e *events) kinds() []admin.EventKind {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []admin.EventKind
	for _, ev := range e.l {
		out = append(out, ev.Kind)
	}
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

var registry flags.Registry

var (
	newCheckout = registry.Bool(flags.Def{Name: "new-checkout", Description: "the one-page checkout",
		Owner: "team-payments", RemoveBy: "2099-12-31"}, false)
	buttonColor = registry.String(flags.Def{Name: "button-color", Description: "the buy button's colour",
		Owner: "team-growth", RemoveBy: "2099-12-31"}, "blue",
		flags.Variant[string]{Name: "blue", Value: "#00f"}, flags.Variant[string]{Name: "green", Value: "#0f0"})
)

func newFixture(t *testing.T, authorize func(*http.Request, admin.Control) error) *fixture {
	t.Helper()
	rec, err := metrics.New(metrics.Options{Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	f := &fixture{rec: rec, dir: t.TempDir(), log: &syncBuffer{}, evs: &events{}}
	write(t, filepath.Join(f.dir, "index.html"), "<p>one</p>")
	f.ui = rec.NewBundle("ui", f.dir, bundle.Options{})
	t.Cleanup(func() { f.ui.Close() })
	ctx := context.Background()
	require.NoError(t, f.ui.Reload(ctx))
	write(t, filepath.Join(f.dir, "index.html"), "<p>two</p>")
	require.NoError(t, f.ui.Reload(ctx))
	f.path = filepath.Join(t.TempDir(), "flags.json")
	write(t, f.path, `{"new-checkout": {"percent": 10, "allow": ["qa"]}, "button-color": "green"}`)
	f.set = rec.NewFlags("flags", &registry, f.path, flags.Options{})
	t.Cleanup(func() { f.set.Close() })
	require.NoError(t, f.set.Reload(ctx))
	h := admin.New(admin.Options{Recorder: rec, Authorize: authorize, Title: "test <service>",
		Logger: slog.New(slog.NewJSONHandler(f.log, nil)), OnEvent: f.evs.on, Refresh: 20 * time.Millisecond})
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

func write(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path+".tmp", []byte(content), 0o644))
	require.NoError(t, os.Rename(path+".tmp", path))
}

// post sends a control request as the page does (same origin), with the
// token if given.
func (f *fixture) post(t *testing.T, action string, form url.Values, tok string, header ...string) (int, map[string]string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/"+action, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := f.srv.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var body map[string]string
	require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
	return res.StatusCode, body
}

func (f *fixture) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	res, err := f.srv.Client().Get(f.srv.URL + path)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res, string(b)
}

func (f *fixture) current() uint64 { return f.ui.Value().Current().Seq }

// TestReadOnly: without an Authorize hook the page shows no control and
// every control request is refused, changing nothing.
func TestReadOnly(t *testing.T) {
	f := newFixture(t, nil)
	res, page := f.get(t, "/")
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Contains(t, page, "test &lt;service&gt;", "the title, escaped")
	assert.Contains(t, res.Header.Get("Content-Security-Policy"), "default-src 'none'")
	assert.NotRegexp(t, regexp.MustCompile(`(src|href)="https?:`), page, "no external asset")
	_, js := f.get(t, "/status")
	var st struct {
		Controls   bool
		Components []metrics.Component
	}
	require.NoError(t, json.Unmarshal([]byte(js), &st))
	assert.False(t, st.Controls)
	require.Len(t, st.Components, 2)

	code, body := f.post(t, "rollback", url.Values{"kind": {"bundle"}, "name": {"ui"}}, token)
	assert.Equal(t, http.StatusForbidden, code)
	assert.Contains(t, body["error"], "read-only")
	assert.Equal(t, uint64(2), f.current(), "nothing changed")
	code, _ = f.post(t, "upgrade", nil, token)
	assert.Equal(t, http.StatusForbidden, code)
	assert.Equal(t, []admin.EventKind{admin.EventRefused, admin.EventRefused}, f.evs.kinds())
}

// TestControls: with the hook, a request without the token is refused
// (403) and changes nothing, one from another origin too; with it, a
// rollback and a rollout take effect.
func TestControls(t *testing.T) {
	f := newFixture(t, bearer)
	rb := url.Values{"kind": {"bundle"}, "name": {"ui"}}
	code, body := f.post(t, "rollback", rb, "")
	assert.Equal(t, http.StatusForbidden, code)
	assert.Contains(t, body["error"], "a valid token is needed")
	code, _ = f.post(t, "rollback", rb, token, "Sec-Fetch-Site", "cross-site")
	assert.Equal(t, http.StatusForbidden, code, "cross-site, even with the token")
	code, _ = f.post(t, "rollback", rb, token, "Sec-Fetch-Site", "", "Origin", "https://evil.example")
	assert.Equal(t, http.StatusForbidden, code, "another Origin")
	assert.Equal(t, uint64(2), f.current(), "nothing changed")

	code, body = f.post(t, "rollback", rb, token)
	require.Equal(t, http.StatusOK, code, "%v", body)
	assert.Equal(t, uint64(1), f.current(), "rolled back")
	code, _ = f.post(t, "rollback", url.Values{"kind": {"bundle"}, "name": {"nope"}}, token)
	assert.Equal(t, http.StatusBadRequest, code)

	// A rollout: the file is rewritten (the flag's allow list kept) and
	// reloaded.
	code, body = f.post(t, "rollout", url.Values{"name": {"flags"}, "flag": {"new-checkout"}, "rollout": {"100"}}, token)
	require.Equal(t, http.StatusOK, code, "%v", body)
	snap := f.set.Snapshot()
	assert.True(t, newCheckout.Enabled(snap, "anyone"), "100 %% after the rollout")
	snap.Release()
	data, err := os.ReadFile(f.path)
	require.NoError(t, err)
	vals, err := flags.Parse(&registry, f.path, data)
	require.NoError(t, err)
	raw, _ := vals.Raw("new-checkout")
	assert.Equal(t, `{"allow":["qa"],"percent":100}`, raw)
	assert.Less(t, strings.Index(string(data), "new-checkout"), strings.Index(string(data), "button-color"), "the order of the flags is kept")

	code, body = f.post(t, "rollout", url.Values{"name": {"flags"}, "flag": {"button-color"}, "rollout": {"blue=1,green=3"}}, token)
	require.Equal(t, http.StatusOK, code, "%v", body)
	snap = f.set.Snapshot()
	n := 0
	for i := range 400 {
		if buttonColor.Get(snap, "k"+string(rune('a'+i%26))+string(rune('a'+i/26))) == "#0f0" {
			n++
		}
	}
	snap.Release()
	assert.InDelta(t, 300, n, 40, "three in four get green")

	before, _ := os.ReadFile(f.path)
	for _, bad := range []url.Values{
		{"name": {"flags"}, "flag": {"new-checkout"}, "rollout": {"150"}},
		{"name": {"flags"}, "flag": {"button-color"}, "rollout": {"red=1"}},
		{"name": {"flags"}, "flag": {"nope"}, "rollout": {"1"}},
		{"name": {"nope"}, "flag": {"new-checkout"}, "rollout": {"1"}},
	} {
		code, body := f.post(t, "rollout", bad, token)
		assert.Equal(t, http.StatusBadRequest, code, "%v: %v", bad, body)
	}
	after, _ := os.ReadFile(f.path)
	assert.Equal(t, string(before), string(after), "refused rollouts leave the file alone")
	code, body = f.post(t, "upgrade", nil, token)
	assert.Equal(t, http.StatusConflict, code)
	assert.Contains(t, body["error"], "no Upgrader")

	checkRecords(t, f.log.String())
}

// TestEvents: the stream sends the status at once and again at a change.
func TestEvents(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/events", nil)
	require.NoError(t, err)
	res, err := f.srv.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	assert.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	next := func() map[string]any {
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var m map[string]any
				require.NoError(t, json.Unmarshal([]byte(data), &m))
				return m
			}
		}
		require.FailNow(t, "the stream ended", "%v", sc.Err())
		return nil
	}
	first := next()
	assert.Contains(t, first, "process")
	_, err = f.ui.Value().Rollback()
	require.NoError(t, err)
	for range 100 {
		m := next()
		for _, c := range m["components"].([]any) {
			if c := c.(map[string]any); c["kind"] == "bundle" && c["seq"] == 1.0 {
				return
			}
		}
	}
	t.Fatal("the rollback never reached the stream")
}

// TestMetricsMounted: /metrics serves the Recorder's registry.
func TestMetricsMounted(t *testing.T) {
	f := newFixture(t, nil)
	res, body := f.get(t, "/metrics")
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Contains(t, body, `handoff_reloads_total{kind="bundle",name="ui"} 2`)
}

// checkRecords holds admin's records to the conventions of ARCHITECTURE.md:
// a message "admin: <kind>", snake_case keys, error as text.
func checkRecords(t *testing.T, log string) {
	t.Helper()
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &rec), line)
		assert.Regexp(t, `^admin: (refused|started|finished)$`, rec["msg"])
		for k := range rec {
			assert.Regexp(t, `^[a-z][a-z0-9_]*$`, k)
		}
		if e, ok := rec["error"]; ok {
			assert.IsType(t, "", e)
		}
		n++
	}
	assert.NotZero(t, n)
}
