//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// documentedFields reads the fields of the JSON report from the package
// doc (doc.go, section "The JSON report"): one line per field, its path
// first ("a.b", "a[].b", "a.*"; "a.{x,y}" stands for a.x and a.y), then its
// type and what it means.
func documentedFields(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(src), "// # The JSON report\n")
	require.True(t, ok, "doc.go has no section \"The JSON report\"")
	fields := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		rest, ok := strings.CutPrefix(line, "//\t")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		require.GreaterOrEqual(t, len(f), 3, "a field's line needs a path, a type and a meaning: %q", line)
		addField(fields, f[0])
	}
	return fields
}

// readmeFields reads the same fields from the table of the README's
// section "Zero downtime in your CI": rows "| `path` | type | meaning |".
func readmeFields(t *testing.T) map[string]bool {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(src), "## Zero downtime in your CI\n")
	require.True(t, ok, "README.md has no section \"Zero downtime in your CI\"")
	section, _, _ = strings.Cut(section, "\n## ")
	fields := map[string]bool{}
	row := regexp.MustCompile("^\\| `([^`]+)` \\| [^|]+ \\| .+ \\|$")
	for _, line := range strings.Split(section, "\n") {
		if m := row.FindStringSubmatch(line); m != nil {
			addField(fields, m[1])
		}
	}
	return fields
}

// addField adds a documented path, "a.{x,y}" standing for a.x and a.y.
func addField(fields map[string]bool, path string) {
	if pre, alts, ok := strings.Cut(path, "{"); ok && strings.HasSuffix(alts, "}") {
		for _, sub := range strings.Split(strings.TrimSuffix(alts, "}"), ",") {
			fields[pre+sub] = true
		}
		return
	}
	fields[path] = true
}

// flatten lists the paths of the leaves of a decoded JSON value, in the
// notation of the doc: an object documented with "path.*" is a map, whose
// keys are not part of the path.
func flatten(v any, path string, doc map[string]bool, out map[string]bool) {
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if doc[join("*")] {
				flatten(x, join("*"), doc, out)
			} else {
				flatten(x, join(k), doc, out)
			}
		}
	case []any:
		for _, x := range v {
			flatten(x, path+"[]", doc, out)
		}
	default:
		out[path] = true
	}
}

// TestReportDocumented (issue 15 d): every field of the JSON report is
// documented in the package doc, and every documented field is in a
// report: one of a run with failures, commands and a process left behind,
// which has them all. The run's report is read back into a Report by
// runChecker, which refuses unknown fields.
func TestReportDocumented(t *testing.T) {
	doc := documentedFields(t)
	r := naiveRun(t, "sleep 600 &", "")
	require.Equal(t, 1, r.code)
	var v any
	require.NoError(t, json.Unmarshal(r.raw, &v))
	got := map[string]bool{}
	flatten(v, "", doc, got)
	for p := range got {
		assert.True(t, doc[p], "the report's field %s is not documented in doc.go", p)
	}
	for p := range doc {
		assert.True(t, got[p], "the documented field %s is not in the report", p)
	}
	t.Logf("%d fields documented, %d in the report", len(doc), len(got))
	assert.Equal(t, doc, readmeFields(t), "the README's table of the report's fields and the command's doc differ")

	// What the report says of this run, read back.
	rep := r.rep
	assert.Equal(t, reportVersion, rep.Version)
	assert.False(t, rep.Passed)
	require.Len(t, rep.Reasons, 2)
	assert.Contains(t, rep.Reasons[0], "failed requests, budget 0")
	assert.Contains(t, rep.Reasons[1], "left behind")
	require.Len(t, rep.Processes.LeftBehind, 1)
	assert.Equal(t, "sleep 600", rep.Processes.LeftBehind[0].Command)
	assert.Equal(t, rep.Requests.Failed, sumValues(rep.Requests.FailedByClass))
	perClient := 0
	for _, c := range rep.Clients {
		perClient += c.Failed
		assert.Equal(t, c.Failed, sumValues(c.FailedByClass), c.Kind)
	}
	assert.Equal(t, rep.Requests.Failed, perClient)
	perUpgrade := 0
	for _, u := range rep.Upgrades.List {
		perUpgrade += u.Failed
	}
	assert.LessOrEqual(t, perUpgrade, rep.Requests.Failed, "failures before the first upgrade count in none")
	assert.Equal(t, rep.Requests.Total, rep.Requests.OK+rep.Requests.Failed+rep.Requests.Unprocessed)
	assert.LessOrEqual(t, rep.Requests.FailedNear, rep.Requests.Failed)
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func TestParseFlags(t *testing.T) {
	var stderr bytes.Buffer
	c, err := parseFlags([]string{"-addr", "127.0.0.1:1", "-pidfile", "p", "-request", "POST /items {\"a\": 1}",
		"-request", "/health", "-header", "X-Key: k", "-slow", "GET /slow?ms=300", "-signal", "usr2", "--", "./app", "-x"}, &stderr)
	require.NoError(t, err)
	assert.Equal(t, []string{"./app", "-x"}, c.Server)
	assert.Equal(t, toPIDFile, c.SignalTo)
	assert.Equal(t, syscall.SIGUSR2, c.Signal)
	assert.Equal(t, syscall.SIGTERM, c.StopSignal)
	assert.Equal(t, "127.0.0.1:1", c.Host)
	h := http.Header{"X-Key": {"k"}}
	assert.Equal(t, []upgradertest.Request{
		{Method: "POST", Path: "/items", Header: h, Body: []byte(`{"a": 1}`)},
		{Method: "GET", Path: "/health", Header: h},
	}, c.Requests)
	assert.Equal(t, upgradertest.Request{Method: "GET", Path: "/", Header: h}, c.Probe, "a POST is not a probe")
	assert.Equal(t, "GET /slow?ms=300", c.Slow.String())
	assert.Nil(t, c.Stream)

	c, err = parseFlags([]string{"-addr", "[::1]:80", "-signal", "1", "-request", "HEAD /x", "--", "app"}, &stderr)
	require.NoError(t, err)
	assert.Equal(t, toServing, c.SignalTo, "without -pidfile: the serving process")
	assert.Equal(t, syscall.SIGHUP, c.Signal)
	assert.Equal(t, "HEAD /x", c.Probe.String())

	for _, bad := range [][]string{
		{"-addr", "127.0.0.1:1"}, // no server command
		{"-addr", "nohost", "--", "app"},
		{"--", "app"},
		{"-addr", "127.0.0.1:1", "-signal", "NOPE", "--", "app"},
		{"-addr", "127.0.0.1:1", "-signal-to", "pidfile", "--", "app"},
		{"-addr", "127.0.0.1:1", "-signal-to", "other", "--", "app"},
		{"-addr", "127.0.0.1:1", "-request", "GET nopath", "--", "app"},
		{"-addr", "127.0.0.1:1", "-header", "novalue", "--", "app"},
		{"-addr", "127.0.0.1:1", "-upgrades", "0", "--", "app"},
		{"-addr", "127.0.0.1:1", "-clients", "2", "--", "app"},
		{"-addr", "127.0.0.1:1", "-rate", "0", "--", "app"},
		{"-addr", "127.0.0.1:1", "-budget", "-1", "--", "app"},
		{"-addr", "127.0.0.1:1", "-upgrade-timeout", "0s", "--", "app"},
		{"-addr", "127.0.0.1:1", "-nosuchflag", "--", "app"},
	} {
		_, err := parseFlags(bad, &stderr)
		assert.ErrorIs(t, err, errUsage, "%q", bad)
	}
}

// TestUsage: a bad command line exits 2 with the reason, before it starts
// anything; -h prints the usage and exits 0.
func TestUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	assert.Equal(t, 2, check([]string{"-addr", "127.0.0.1:1"}, &stdout, &stderr))
	assert.Contains(t, stderr.String(), "handoff-check: usage: no server command")
	stderr.Reset()
	assert.Equal(t, 0, check([]string{"-h"}, &stdout, &stderr))
	assert.True(t, strings.HasPrefix(stderr.String(), "handoff-check upgrades a server under load"))
	assert.Contains(t, stderr.String(), "-upgrade-cmd command")
	assert.Empty(t, stdout.String())
}

// TestJSONOnStdout: with -json - the JSON report is on stdout and the text
// report on stderr.
func TestJSONOnStdout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, checker.Path(""), "-json", "-", "-addr", freeAddr(t), "--", "sh", "-c", "exit 3")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 1, ee.ExitCode())
	var rep Report
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), stdout.String())
	assert.True(t, strings.HasSuffix(stderr.String(), "handoff-check: "+rep.Verdict+"\n"), stderr.String())
	assert.Contains(t, rep.Verdict, "exited with status 3")
}
