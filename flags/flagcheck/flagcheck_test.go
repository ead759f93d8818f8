package flagcheck_test

import (
	"testing"

	"github.com/handoff-go/handoff/flags/flagcheck"
	"github.com/stretchr/testify/require"
	"golang.org/x/tools/go/analysis/analysistest"
)

// TestAnalyzer covers each report (the want comments of testdata/src):
// expired (at the definition, in a library and in a main package),
// definitions the Registry refuses or the analyzer cannot follow, unknown
// names (OpenFeature's client and Snapshot.Evaluate), and unused flags
// (registered in the program's main package, and in a library it
// imports). The date is fixed: 2026-06-01.
func TestAnalyzer(t *testing.T) {
	require.NoError(t, flagcheck.Analyzer.Flags.Set("today", "2026-06-01"))
	analysistest.Run(t, analysistest.TestData(), flagcheck.Analyzer, "features", "app", "local")
}
