package ofprovider_test

import (
	"context"
	"fmt"

	"github.com/handoff-go/handoff/flags"
	"github.com/handoff-go/handoff/flags/ofprovider"
	"github.com/handoff-go/handoff/reload"
	"github.com/open-feature/go-sdk/openfeature"
)

// Code written against OpenFeature evaluates handoff's flags, and hears
// of each swap of the values.
func Example() {
	var registry flags.Registry
	registry.Bool(flags.Def{Name: "new-checkout", Description: "the one-page checkout",
		Owner: "team-payments", RemoveBy: "2099-03-31"}, false)
	set := flags.New(&registry, "", flags.Options{}) // in a program: the values file's path
	defer set.Close()

	if err := openfeature.SetNamedProviderAndWait("example", ofprovider.New(set)); err != nil {
		fmt.Println(err)
		return
	}
	defer openfeature.Shutdown()
	client := openfeature.NewClient("example")
	changed := make(chan []string, 1)
	onChange := func(d openfeature.EventDetails) { changed <- d.FlagChanges }
	client.AddHandler(openfeature.ProviderConfigChange, &onChange)

	user := openfeature.NewEvaluationContext("user-7", nil)
	on, _ := client.BooleanValue(context.Background(), "new-checkout", false, user)
	fmt.Println("before:", on)

	// What a change of the values file does (set.Reload, set.Watch).
	vals, _ := flags.Parse(&registry, "flags.json", []byte(`{"new-checkout": {"percent": 2}}`))
	_, _ = set.Value().Swap(vals, reload.Info{ID: vals.ID(), Source: "flags.json"})
	fmt.Println("changed:", <-changed)
	d, _ := client.BooleanValueDetails(context.Background(), "new-checkout", false, user)
	fmt.Println("after:", d.Value, d.Variant, d.Reason)
	// Output:
	// before: false
	// changed: [new-checkout]
	// after: true on SPLIT
}
