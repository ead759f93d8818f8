// Command app evaluates the flags of package features. // want package:"5 definitions, 6 uses"
package main // want `flag "forgotten" \(registered at .*features.go:\d+:\d+\) is never evaluated by this program`

import (
	"context"

	"features"

	"github.com/handoff-go/handoff/flags"
	"github.com/open-feature/go-sdk/openfeature"
)

func main() {
	var snap flags.Snapshot
	_ = features.NewCheckout.Enabled(snap, "user-1")
	_ = features.OldBanner.Enabled(snap, "user-1")
	_ = features.Layout.Get(snap, "user-1")
	client := &openfeature.Client{}
	_, _ = client.StringValueDetails(context.Background(), "button-color", "", openfeature.EvaluationContext{})
	_, _ = client.BooleanValue(context.Background(), "new-chekout", false, openfeature.EvaluationContext{}) // want `flag "new-chekout" is evaluated but not registered`
	_, _ = snap.Evaluate("ghost", "user-1")                                                                 // want `flag "ghost" is evaluated but not registered`
	flag := "runtime-name"
	_, _ = snap.Evaluate(flag, "user-1") // not a constant: not checked
}
