//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCIRecipe (issue 15, docs): the Makefile target of examples/ci builds
// the service, runs the check with a budget of 0 and leaves the JSON report
// where the workflow uploads it from.
func TestCIRecipe(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make on this machine")
	}
	out := t.TempDir()
	addr := freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-f", "examples/ci/Makefile", "zero-downtime",
		"OUT="+out, "ADDR="+addr, "UPGRADES=2", "HANDOFF_CHECK="+checker.Path(""),
		"CHECK_FLAGS=-slow 'GET /slow?ms=100' -stream 'GET /stream?s=0.5' -quiet")
	cmd.Dir = filepath.Join("..", "..")
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	err := cmd.Run()
	t.Logf("make zero-downtime:\n%s", output.String())
	require.NoError(t, err)
	assert.Empty(t, runningFrom(out), "processes left running")

	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	require.NoError(t, err)
	var rep Report
	require.NoError(t, json.Unmarshal(b, &rep))
	assert.True(t, rep.Passed, rep.Verdict)
	assert.Equal(t, 0, rep.Config.Budget)
	assert.Equal(t, 2, rep.Upgrades.Completed)
	assert.Equal(t, filepath.Join(out, "app"), rep.ServerCommand[0], "the service built by the target")
	assert.FileExists(t, filepath.Join(out, "server.log"))

	// The workflow runs the target and uploads what it leaves.
	wf, err := os.ReadFile(filepath.Join("..", "..", "examples", "ci", "zero-downtime.yml"))
	require.NoError(t, err)
	for _, s := range []string{"make -f examples/ci/Makefile zero-downtime", "BUDGET=0", "actions/upload-artifact@", "zero-downtime/report.json", "if: always()"} {
		assert.True(t, strings.Contains(string(wf), s), "the workflow has no %q", s)
	}
}
