// Package ofprovider is an OpenFeature provider
// (github.com/open-feature/go-sdk) on a flags.Set: code written against
// the OpenFeature API evaluates handoff's flags, with their stable
// assignment, and hears of each swap of the values as a
// PROVIDER_CONFIGURATION_CHANGED event.
//
//	provider := ofprovider.New(set)
//	if err := openfeature.SetProviderAndWait(provider); err != nil { ... }
//	client := openfeature.NewDefaultClient()
//	on, _ := client.BooleanValue(ctx, "new-checkout", false,
//		openfeature.NewEvaluationContext(userID, map[string]any{"country": "FR"}))
//
// The targeting key is the flags' key; the other string (and number and
// boolean) attributes of the evaluation context are the flags.Attr values
// the rules match. A context made with flags.NewContext (as Set.Handler
// does for each request) carries a Snapshot, and every evaluation with it
// sees that one version of the values; otherwise each evaluation takes the
// current one. Variants are reported by name, reasons as OpenFeature's
// (STATIC, SPLIT, TARGETING_MATCH, DEFAULT), a flag the Registry does not
// have as FLAG_NOT_FOUND, a flag of another kind as TYPE_MISMATCH.
//
// Prefer the typed handles of package flags in code that can: they cost
// a tenth of an evaluation through the OpenFeature client, and the
// analyzer of flags/flagcheck follows them (it also checks the names
// given to OpenFeature's client methods).
package ofprovider

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"

	"github.com/handoff-go/handoff/flags"
	"github.com/open-feature/go-sdk/openfeature"
)

// Name is the provider's name in its Metadata.
const Name = "handoff-flags"

// Provider is an OpenFeature provider on a flags.Set. It implements
// openfeature.FeatureProvider, StateHandler and EventHandler. Its
// evaluations are safe for concurrent use.
type Provider struct {
	set    *flags.Set
	events chan openfeature.Event

	mu      sync.Mutex
	stop    chan struct{} // of the running forwarder; nil when none runs
	stopped chan struct{}
}

// eventBuffer is the events a slow reader may fall behind by before the
// forwarder waits for it.
const eventBuffer = 16

// New returns a provider that evaluates set's flags. It starts nothing:
// the OpenFeature API calls Init when the provider is set, which starts
// forwarding swaps as events, and Shutdown, which stops it.
func New(set *flags.Set) *Provider {
	return &Provider{set: set, events: make(chan openfeature.Event, eventBuffer)}
}

// Metadata names the provider.
func (p *Provider) Metadata() openfeature.Metadata { return openfeature.Metadata{Name: Name} }

// Hooks returns none.
func (p *Provider) Hooks() []openfeature.Hook { return nil }

// Init starts forwarding each swap and rollback of the Set's values as a
// PROVIDER_CONFIGURATION_CHANGED event, whose FlagChanges lists the flags
// whose values changed. The provider is ready at once: a Set always has
// values (its defaults before its first load).
func (p *Provider) Init(openfeature.EvaluationContext) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stop != nil {
		return nil
	}
	select {
	case _, open := <-p.events:
		if !open { // closed by a Shutdown: Init again
			p.events = make(chan openfeature.Event, eventBuffer)
		}
	default:
	}
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	changed := p.set.Changed()
	snap := p.set.Snapshot()
	prev := snap.Values() // immutable; kept for the comparison only
	snap.Release()
	go p.forward(changed, prev, p.events, p.stop, p.stopped)
	return nil
}

// Shutdown stops forwarding events, waits for the forwarder to end, and
// closes the event channel, which ends the go-sdk's reader of it. It is
// idempotent, and Init may start again with a new channel.
func (p *Provider) Shutdown() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stop == nil {
		return
	}
	close(p.stop)
	<-p.stopped
	p.stop, p.stopped = nil, nil
	close(p.events)
}

// EventChannel is where the provider sends its events.
func (p *Provider) EventChannel() <-chan openfeature.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.events
}

func (p *Provider) forward(changed <-chan struct{}, prev *flags.Values, events chan<- openfeature.Event, stop, stopped chan struct{}) {
	defer close(stopped)
	for {
		select {
		case <-stop:
			return
		case <-changed:
		}
		changed = p.set.Changed()
		snap := p.set.Snapshot()
		cur, seq := snap.Values(), snap.Seq()
		snap.Release()
		if cur == nil {
			return // the Set is closed: nothing will change again
		}
		ev := openfeature.Event{
			ProviderName: Name,
			EventType:    openfeature.ProviderConfigChange,
			ProviderEventDetails: openfeature.ProviderEventDetails{
				Message:       fmt.Sprintf("flags: values version %d (%s)", seq, cur.ID()),
				FlagChanges:   cur.Changed(prev),
				EventMetadata: map[string]any{"seq": seq, "id": cur.ID()},
			},
		}
		prev = cur
		select {
		case events <- ev:
		case <-stop:
			return
		}
	}
}

// maxAttrs is the number of attributes evaluated without an allocation.
const maxAttrs = 8

// evaluate evaluates a flag by name for the evaluation context.
func (p *Provider) evaluate(ctx context.Context, flag string, flatCtx openfeature.FlattenedContext) (flags.Evaluation, bool) {
	snap, ok := flags.FromContext(ctx)
	if !ok {
		snap = p.set.Snapshot()
		defer snap.Release()
	}
	key, hasKey := flatCtx[openfeature.TargetingKey].(string)
	if len(flatCtx) == 0 || len(flatCtx) == 1 && hasKey {
		return snap.Evaluate(flag, key)
	}
	return evaluateAttrs(snap, flag, key, flatCtx)
}

// evaluateAttrs evaluates with the context's attributes: strings, and
// booleans and numbers formatted as strconv does.
func evaluateAttrs(snap flags.Snapshot, flag, key string, flatCtx openfeature.FlattenedContext) (flags.Evaluation, bool) {
	var buf [maxAttrs]flags.Attr
	attrs := buf[:0]
	for name, v := range flatCtx {
		if name == openfeature.TargetingKey {
			continue
		}
		switch v := v.(type) {
		case string:
			attrs = append(attrs, flags.Attr{Name: name, Value: v})
		case bool:
			attrs = append(attrs, flags.Attr{Name: name, Value: strconv.FormatBool(v)})
		case int:
			attrs = append(attrs, flags.Attr{Name: name, Value: strconv.Itoa(v)})
		case int64:
			attrs = append(attrs, flags.Attr{Name: name, Value: strconv.FormatInt(v, 10)})
		case float64:
			attrs = append(attrs, flags.Attr{Name: name, Value: strconv.FormatFloat(v, 'f', -1, 64)})
		}
	}
	return snap.Evaluate(flag, key, attrs...)
}

// detail is the resolution detail of an evaluation, or of a failure.
func detail(ev flags.Evaluation, err *openfeature.ResolutionError) openfeature.ProviderResolutionDetail {
	if err != nil {
		return openfeature.ProviderResolutionDetail{ResolutionError: *err, Reason: openfeature.ErrorReason}
	}
	return openfeature.ProviderResolutionDetail{Reason: openfeature.Reason(ev.Reason), Variant: ev.Variant}
}

func check(ev flags.Evaluation, found bool, flag string, want flags.Kind) *openfeature.ResolutionError {
	switch {
	case !found:
		e := openfeature.NewFlagNotFoundResolutionError(fmt.Sprintf("flag %q is not registered", flag))
		return &e
	case ev.Kind != want:
		e := openfeature.NewTypeMismatchResolutionError(fmt.Sprintf("flag %q is a %s flag, not a %s one", flag, ev.Kind, want))
		return &e
	}
	return nil
}

// BooleanEvaluation evaluates a flags.Bool.
func (p *Provider) BooleanEvaluation(ctx context.Context, flag string, defaultValue bool, flatCtx openfeature.FlattenedContext) openfeature.BoolResolutionDetail {
	ev, found := p.evaluate(ctx, flag, flatCtx)
	if err := check(ev, found, flag, flags.KindBool); err != nil {
		return openfeature.BoolResolutionDetail{Value: defaultValue, ProviderResolutionDetail: detail(ev, err)}
	}
	return openfeature.BoolResolutionDetail{Value: ev.Value.(bool), ProviderResolutionDetail: detail(ev, nil)}
}

// StringEvaluation evaluates a flag registered with Registry.String.
func (p *Provider) StringEvaluation(ctx context.Context, flag string, defaultValue string, flatCtx openfeature.FlattenedContext) openfeature.StringResolutionDetail {
	ev, found := p.evaluate(ctx, flag, flatCtx)
	if err := check(ev, found, flag, flags.KindString); err != nil {
		return openfeature.StringResolutionDetail{Value: defaultValue, ProviderResolutionDetail: detail(ev, err)}
	}
	return openfeature.StringResolutionDetail{Value: ev.Value.(string), ProviderResolutionDetail: detail(ev, nil)}
}

// FloatEvaluation evaluates a flag registered with Registry.Number.
func (p *Provider) FloatEvaluation(ctx context.Context, flag string, defaultValue float64, flatCtx openfeature.FlattenedContext) openfeature.FloatResolutionDetail {
	ev, found := p.evaluate(ctx, flag, flatCtx)
	if err := check(ev, found, flag, flags.KindNumber); err != nil {
		return openfeature.FloatResolutionDetail{Value: defaultValue, ProviderResolutionDetail: detail(ev, err)}
	}
	return openfeature.FloatResolutionDetail{Value: ev.Value.(float64), ProviderResolutionDetail: detail(ev, nil)}
}

// IntEvaluation evaluates a flag registered with Registry.Number whose
// variant is a whole number (TYPE_MISMATCH otherwise).
func (p *Provider) IntEvaluation(ctx context.Context, flag string, defaultValue int64, flatCtx openfeature.FlattenedContext) openfeature.IntResolutionDetail {
	ev, found := p.evaluate(ctx, flag, flatCtx)
	err := check(ev, found, flag, flags.KindNumber)
	if err == nil {
		if f := ev.Value.(float64); f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			e := openfeature.NewTypeMismatchResolutionError(fmt.Sprintf("flag %q: variant %q is %v, not a whole number", flag, ev.Variant, f))
			err = &e
		}
	}
	if err != nil {
		return openfeature.IntResolutionDetail{Value: defaultValue, ProviderResolutionDetail: detail(ev, err)}
	}
	return openfeature.IntResolutionDetail{Value: int64(ev.Value.(float64)), ProviderResolutionDetail: detail(ev, nil)}
}

// ObjectEvaluation evaluates a flag registered with flags.Object; the
// value is the variant's, shared: treat it as read-only.
func (p *Provider) ObjectEvaluation(ctx context.Context, flag string, defaultValue any, flatCtx openfeature.FlattenedContext) openfeature.InterfaceResolutionDetail {
	ev, found := p.evaluate(ctx, flag, flatCtx)
	if err := check(ev, found, flag, flags.KindObject); err != nil {
		return openfeature.InterfaceResolutionDetail{Value: defaultValue, ProviderResolutionDetail: detail(ev, err)}
	}
	return openfeature.InterfaceResolutionDetail{Value: ev.Value, ProviderResolutionDetail: detail(ev, nil)}
}
