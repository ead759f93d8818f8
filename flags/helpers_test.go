package flags_test

import (
	"github.com/handoff-go/handoff/flags"
)

// testFlags is a registry like a program's: a rollout and an A/B test.
type testFlags struct {
	reg      *flags.Registry
	checkout *flags.Bool
	color    *flags.Variants[string]
	limit    *flags.Variants[float64]
	layout   *flags.Variants[layout]
}

type layout struct{ Columns int }

func newTestFlags() *testFlags {
	reg := &flags.Registry{}
	return &testFlags{
		reg: reg,
		checkout: reg.Bool(flags.Def{Name: "new-checkout", Description: "the one-page checkout",
			Owner: "team-payments", RemoveBy: "2099-12-31"}, false),
		color: reg.String(flags.Def{Name: "button-color", Description: "the buy button's colour",
			Owner: "team-growth", RemoveBy: "2099-12-31"}, "blue",
			flags.Variant[string]{Name: "blue", Value: "#0000ff"},
			flags.Variant[string]{Name: "green", Value: "#00ff00"}),
		limit: reg.Number(flags.Def{Name: "page-size", Description: "items per page",
			Owner: "team-search", RemoveBy: "2099-12-31"}, "small",
			flags.Variant[float64]{Name: "small", Value: 20},
			flags.Variant[float64]{Name: "large", Value: 50}),
		layout: flags.Object(reg, flags.Def{Name: "layout", Description: "the grid",
			Owner: "team-web", RemoveBy: "2099-12-31"}, "two",
			flags.Variant[layout]{Name: "two", Value: layout{2}, Weight: 1},
			flags.Variant[layout]{Name: "three", Value: layout{3}, Weight: 1}),
	}
}
