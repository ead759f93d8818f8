// Package features registers the flags of the app. // want package:"5 definitions, 0 uses"
package features

import "github.com/handoff-go/handoff/flags"

var Registry flags.Registry

var NewCheckout = Registry.Bool(flags.Def{ // want NewCheckout:"flag new-checkout"
	Name:        "new-checkout",
	Description: "the one-page checkout",
	Owner:       "team-payments",
	RemoveBy:    "2026-12-31",
}, false)

var OldBanner = Registry.Bool(flags.Def{ // want OldBanner:"flag old-banner" `flag "old-banner" expired on 2026-01-31: remove it and the code it guards \(owner: team-web\)`
	Name:        "old-banner",
	Description: "the winter banner",
	Owner:       "team-web",
	RemoveBy:    "2026-01-31",
}, true)

var ButtonColor = Registry.String(flags.Def{ // want ButtonColor:"flag button-color"
	Name:        "button-color",
	Description: "the buy button",
	Owner:       "team-growth",
	RemoveBy:    "2026-09-30",
}, "blue", flags.Variant[string]{Name: "blue", Value: "#00f"})

type layout struct{ Columns int }

var Layout = flags.Object(&Registry, flags.Def{ // want Layout:"flag layout"
	Name:        "layout",
	Description: "the grid",
	Owner:       "team-web",
	RemoveBy:    "2026-09-30",
}, "two", flags.Variant[layout]{Name: "two", Value: layout{2}})

var Forgotten = Registry.Bool(flags.Def{ // want Forgotten:"flag forgotten"
	Name:        "forgotten",
	Description: "a flag nobody evaluates",
	Owner:       "team-web",
	RemoveBy:    "2026-09-30",
}, false)

var NoOwner = Registry.Bool(flags.Def{ // want `flag "no-owner": no Owner: the Registry refuses the definition`
	Name:        "no-owner",
	Description: "who decides?",
	RemoveBy:    "2026-09-30",
}, false)

var BadDate = Registry.Bool(flags.Def{ // want `flag "bad-date": RemoveBy "30/09/2026" is not a date`
	Name:        "bad-date",
	Description: "a date in another format",
	Owner:       "team-web",
	RemoveBy:    "30/09/2026",
}, false)

func name() string { return "dynamic" }

var Dynamic = Registry.Bool(flags.Def{
	Name:        name(), // want `flag definition: Name is not a constant: the analyzer cannot follow the flag`
	Description: "a name known at run time",
	Owner:       "team-web",
	RemoveBy:    "2026-09-30",
}, false)

var def = flags.Def{Name: "indirect", Description: "d", Owner: "o", RemoveBy: "2026-09-30"}

var Indirect = Registry.Bool(def, false) // want `flag definition is not a flags.Def literal: the analyzer cannot follow the flag`
