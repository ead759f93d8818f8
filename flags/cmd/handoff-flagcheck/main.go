// Command handoff-flagcheck checks the feature flags of package flags.
//
// As a vet tool it runs the analyzer of flags/flagcheck: flags past their
// removal date, flags evaluated by name that the program does not
// register, registered flags that no code evaluates, definitions the
// Registry would refuse. It exits non-zero when it reports any:
//
//	go install github.com/handoff-go/handoff/flags/cmd/handoff-flagcheck
//	go vet -vettool=$(which handoff-flagcheck) ./...
//	go vet -vettool=$(which handoff-flagcheck) -flagcheck.unused=false ./...
//
// With "values" it lists a values file (JSON, or YAML by its extension)
// against the flags the packages register and evaluate:
//
//	handoff-flagcheck values [-today YYYY-MM-DD] flags.yaml ./cmd/server
//
// Each flag is listed with its state: ok, expired, unused (registered, no
// code evaluates it), unknown (in the file, not registered), default (not
// in the file: its default serves). It exits 1 when a flag is expired,
// unused or unknown, 2 when it cannot check.
package main

import (
	"os"

	"github.com/handoff-go/handoff/flags/flagcheck"
	"golang.org/x/tools/go/analysis/unitchecker"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "values" {
		os.Exit(values(os.Args[2:], os.Stdout, os.Stderr))
	}
	unitchecker.Main(flagcheck.Analyzer)
}
