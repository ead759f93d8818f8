package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/flags/flagcheck"
	"github.com/handoff-go/handoff/flags/flagsyaml"
	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/checker"
	"golang.org/x/tools/go/packages"
)

// values lists a values file against the flags the packages register
// and evaluate; it returns the exit status.
func values(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("handoff-flagcheck values", flag.ContinueOnError)
	fs.SetOutput(stderr)
	today := fs.String("today", "", "the date expiry is judged on, YYYY-MM-DD (default: today)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: handoff-flagcheck values [-today YYYY-MM-DD] FILE [packages]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() < 1 {
		fs.Usage()
		return 2
	}
	now := time.Now()
	if *today != "" {
		t, err := time.Parse(flags.DateLayout, *today)
		if err != nil {
			fmt.Fprintf(stderr, "handoff-flagcheck: -today: %v\n", err)
			return 2
		}
		now = t
	}
	file, patterns := fs.Arg(0), fs.Args()[1:]
	if len(patterns) == 0 {
		patterns = []string{"."}
	}
	inFile, err := readNames(file)
	if err != nil {
		fmt.Fprintf(stderr, "handoff-flagcheck: %v\n", err)
		return 2
	}
	prog, err := analyze(patterns)
	if err != nil {
		fmt.Fprintf(stderr, "handoff-flagcheck: %v\n", err)
		return 2
	}

	defs := map[string]flagcheck.Def{}
	for _, d := range prog.Defs {
		defs[d.Name] = d
	}
	used := map[string]bool{}
	for _, u := range prog.Uses {
		used[u.Name] = true
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range defs {
			if !yield(n) {
				return
			}
		}
		for n := range inFile {
			if _, dup := defs[n]; !dup && !yield(n) {
				return
			}
		}
	})
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FLAG\tSTATE\tOWNER\tREMOVE BY\tDEFINED AT")
	bad := 0
	for _, n := range names {
		d, registered := defs[n]
		var states []string
		switch {
		case !registered:
			states = append(states, "unknown")
		default:
			if t, err := time.Parse(flags.DateLayout, d.RemoveBy); err == nil && !now.Before(t.AddDate(0, 0, 1)) {
				states = append(states, "expired")
			}
			if !used[n] {
				states = append(states, "unused")
			}
		}
		if len(states) > 0 {
			bad++
		} else if inFile[n] {
			states = append(states, "ok")
		} else {
			states = append(states, "default")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n, strings.Join(states, ","), dash(d.Owner), dash(d.RemoveBy), dash(relative(d.Pos)))
	}
	if err := tw.Flush(); err != nil {
		return 2
	}
	if bad > 0 {
		fmt.Fprintf(stderr, "handoff-flagcheck: %s: %d of %d flags expired, unused or unknown\n", file, bad, len(names))
		return 1
	}
	return 0
}

// readNames returns the flag names a values file sets.
func readNames(file string) (map[string]bool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if ext := strings.ToLower(filepath.Ext(file)); ext == ".yaml" || ext == ".yml" {
		if data, err = flagsyaml.ToJSON(data); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: not an object of flags: %w", file, err)
	}
	names := make(map[string]bool, len(m))
	for n := range m {
		names[n] = true
	}
	return names, nil
}

// analyze runs the analyzer over the packages and returns what their
// programs define and use.
func analyze(patterns []string) (*flagcheck.Program, error) {
	cfg := &packages.Config{Mode: packages.LoadAllSyntax, Tests: false}
	pkgs, err := packages.Load(cfg, patterns...)
	if err != nil {
		return nil, err
	}
	if n := packages.PrintErrors(pkgs); n > 0 {
		return nil, fmt.Errorf("%d errors loading %s", n, strings.Join(patterns, " "))
	}
	g, err := checker.Analyze([]*analysis.Analyzer{flagcheck.Analyzer}, pkgs, nil)
	if err != nil {
		return nil, err
	}
	all := &flagcheck.Program{}
	for _, act := range g.Roots {
		if p, ok := act.Result.(*flagcheck.Program); ok {
			all.Defs = append(all.Defs, p.Defs...)
			all.Uses = append(all.Uses, p.Uses...)
		}
	}
	return all, nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// relative shortens a position to the current directory, when it is under it.
func relative(pos string) string {
	if wd, err := os.Getwd(); err == nil {
		if rel, ok := strings.CutPrefix(pos, wd+string(filepath.Separator)); ok {
			return rel
		}
	}
	return pos
}
