package main

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// build builds the command into the test's temporary directory.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "handoff-flagcheck")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

// run runs a command from the module's root and returns its output and
// exit status.
func run(t *testing.T, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = filepath.Join("..", "..", "..")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		require.NoError(t, err)
	}
	return o.String(), e.String(), code
}

const shop = "./flags/cmd/handoff-flagcheck/testdata/shop"

// TestVet (acceptance c): go vet with the command as its vet tool reports
// the expired flag at its definition, in go vet's file:line:column
// format, with the unknown and the unused one, and exits non-zero; with
// those reports off and a date before the removal date it passes.
func TestVet(t *testing.T) {
	bin := build(t)
	_, stderr, code := run(t, "go", "vet", "-vettool="+bin, "-flagcheck.today=2026-06-01", shop)
	t.Logf("go vet exited %d:\n%s", code, stderr)
	assert.NotZero(t, code)
	assert.Contains(t, stderr, "flags/cmd/handoff-flagcheck/testdata/shop/main.go:18:30: flag \"new-checkout\" expired on 2026-03-31: remove it and the code it guards (owner: team-payments)\n")
	assert.Regexp(t, `shop/main.go:\d+:\d+: flag "new-chekout" is evaluated but not registered`, stderr)
	assert.Regexp(t, `shop/main.go:\d+:\d+: flag "forgotten" is registered but no code evaluates it`, stderr)

	_, stderr, code = run(t, "go", "vet", "-vettool="+bin, "-flagcheck.today=2026-03-31", "-flagcheck.unused=false", "-flagcheck.unknown=false", shop)
	assert.Zero(t, code, stderr)
}

// TestValues: the values file against the registry.
func TestValues(t *testing.T) {
	bin := build(t)
	stdout, stderr, code := run(t, bin, "values", "-today", "2026-06-01", filepath.Join(shop, "flags.yaml"), shop)
	t.Logf("exit %d\n%s%s", code, stdout, stderr)
	assert.Equal(t, 1, code)
	assert.Regexp(t, `button-color +ok +team-growth +2099-12-31 `, stdout)
	assert.Regexp(t, `forgotten +unused +team-web `, stdout)
	assert.Regexp(t, `new-checkout +expired +team-payments +2026-03-31 `, stdout)
	assert.Regexp(t, `old-banner +unknown +- `, stdout)
	assert.Contains(t, stderr, "3 of 4 flags expired, unused or unknown")

	_, _, code = run(t, bin, "values", "no-such-file.json", shop)
	assert.Equal(t, 2, code)
}
