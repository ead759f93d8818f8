// Command local registers and evaluates its flags itself. // want package:"3 definitions, 2 uses"
package main

import "github.com/handoff-go/handoff/flags"

var registry flags.Registry

var (
	used = registry.Bool(flags.Def{Name: "used", Description: "d", Owner: "o", RemoveBy: "2026-12-31"}, false) // want used:"flag used"
	_    = registry.Bool(flags.Def{Name: "dead", Description: "d", Owner: "o", RemoveBy: "2026-12-31"}, false) // want `flag "dead" is registered but no code evaluates it`
	late = registry.Number(flags.Def{Name: "late", Description: "d", Owner: "o", RemoveBy: "2026-05-31"}, "a") // want late:"flag late" `flag "late" expired on 2026-05-31`
)

func main() {
	var snap flags.Snapshot
	if used.Enabled(snap, "k") {
		_ = late.Get(snap, "k")
	}
}
