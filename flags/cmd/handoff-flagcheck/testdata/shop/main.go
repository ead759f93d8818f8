// Command shop is the program the tests of handoff-flagcheck check: one
// flag expires on 2026-03-31, one is never evaluated, one name is not
// registered.
package main

import (
	"context"
	"fmt"

	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/flags/ofprovider"
	"github.com/open-feature/go-sdk/openfeature"
)

var registry flags.Registry

var (
	newCheckout = registry.Bool(flags.Def{
		Name:        "new-checkout",
		Description: "the one-page checkout",
		Owner:       "team-payments",
		RemoveBy:    "2026-03-31",
	}, false)
	buttonColor = registry.String(flags.Def{
		Name:        "button-color",
		Description: "the buy button",
		Owner:       "team-growth",
		RemoveBy:    "2099-12-31",
	}, "blue", flags.Variant[string]{Name: "blue", Value: "#00f"}, flags.Variant[string]{Name: "green", Value: "#0f0"})
	_ = registry.Bool(flags.Def{
		Name:        "forgotten",
		Description: "a flag nobody evaluates",
		Owner:       "team-web",
		RemoveBy:    "2099-12-31",
	}, false)
)

func main() {
	set := flags.New(&registry, "", flags.Options{})
	defer set.Close()
	snap := set.Snapshot()
	defer snap.Release()
	fmt.Println(newCheckout.Enabled(snap, "alice"), buttonColor.Get(snap, "alice"))
	_ = openfeature.SetProviderAndWait(ofprovider.New(set))
	client := openfeature.NewDefaultClient()
	on, _ := client.BooleanValue(context.Background(), "new-chekout", false, openfeature.EvaluationContext{})
	fmt.Println(on)
}
