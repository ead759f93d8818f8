package handoff_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestQuickstartIsREADME (issue 9 d): the README's quick start is
// examples/quickstart/main.go verbatim, and the program is at most 10 lines
// beyond its imports (the handler is upgradertest.Handler).
func TestQuickstartIsREADME(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	file, err := os.ReadFile("examples/quickstart/main.go")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(readme), "## Quick start")
	require.True(t, ok, "README.md has no \"## Quick start\" section")
	_, rest, ok = strings.Cut(rest, "```go\n")
	require.True(t, ok, "the quick start has no go block")
	block, _, ok := strings.Cut(rest, "```\n")
	require.True(t, ok, "the quick start's go block does not end")
	assert.Equal(t, string(file), block, "README.md's quick start differs from examples/quickstart/main.go")

	code := 0
	inImports := false
	for _, line := range strings.Split(string(file), "\n") {
		l := strings.TrimSpace(line)
		switch {
		case l == "import (":
			inImports = true
		case inImports:
			inImports = l != ")"
		case l == "", strings.HasPrefix(l, "//"):
		default:
			code++
		}
	}
	assert.LessOrEqual(t, code, 10, "lines of code beyond the imports")
	t.Logf("the quick start is %d lines of code beyond its imports", code)
}
