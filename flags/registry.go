package flags

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DateLayout is the layout of Def.RemoveBy: a calendar date, 2006-01-02.
const DateLayout = time.DateOnly

// validName is the form of flag and variant names: lower case letters,
// digits, '-', '_' and '.', starting with a letter or a digit.
var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// Kind is the kind of a flag: a boolean or variants of one value type.
type Kind int

const (
	// KindBool: on or off (Registry.Bool).
	KindBool Kind = iota + 1
	// KindString: variants whose values are strings (Registry.String).
	KindString
	// KindNumber: variants whose values are numbers (Registry.Number).
	KindNumber
	// KindObject: variants whose values are any Go value (Object).
	KindObject
)

var kindNames = [...]string{KindBool: "bool", KindString: "string", KindNumber: "number", KindObject: "object"}

// String returns "bool", "string", "number" or "object".
func (k Kind) String() string {
	if k > 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Def describes a flag. Every field is required: a definition without
// one is refused at registration (see [Registry.Bool]). Give the fields
// as constants in a composite literal: the analyzer of
// flags/flagcheck reads them from the source.
type Def struct {
	// Name identifies the flag in values files, exposure reports and
	// OpenFeature: lower case letters, digits, '-', '_' and '.'.
	Name string
	// Description says what the flag changes, for whoever reads the
	// registry or the values file.
	Description string
	// Owner is who decides about the flag and removes it: a team, a person.
	Owner string
	// RemoveBy is the date (DateLayout, "2026-12-31") by which the flag
	// and the code it guards should be gone. `go vet
	// -vettool=$(which handoff-flagcheck)` reports a flag past it, and so
	// does flagstest.NoExpired.
	RemoveBy string
}

// Variant is one value of a variant flag, with its weight in the default
// split (used while the values file says nothing about the flag's weights).
type Variant[T any] struct {
	Name   string
	Value  T
	Weight float64 // relative weight in the default split; all zero: everyone gets the default
}

// Info describes a registered flag.
type Info struct {
	Def
	Kind     Kind
	Remove   time.Time // RemoveBy, parsed (midnight UTC)
	Default  string    // the default variant ("on" or "off" for a Bool)
	Variants []string  // variant names in the order of their definition ("off", "on" for a Bool)
}

// Expired reports whether the flag is past its removal date at now: on
// the day after RemoveBy (UTC).
func (i Info) Expired(now time.Time) bool {
	return !now.UTC().Before(i.Remove.AddDate(0, 0, 1))
}

// flag is a registered flag: what evaluation needs, fixed at registration.
type flag struct {
	info     Info
	index    int      // in the Registry and in every Values
	seed     uint64   // FNV-1a state after the name and a zero byte
	values   []any    // variant values, boxed once (bool: false, true)
	variants []string // info.Variants
	dflt     int      // index of the default variant
	split    *outcome // the default weights, nil when all are zero (and for a Bool)
}

// Registry holds the flags a program defines. Flags are registered at
// package initialisation, usually as package-level variables:
//
//	var registry flags.Registry
//
//	var newCheckout = registry.Bool(flags.Def{
//		Name:        "new-checkout",
//		Description: "the one-page checkout",
//		Owner:       "team-payments",
//		RemoveBy:    "2027-03-31",
//	}, false)
//
// The zero Registry is ready to use. A Registry is safe for concurrent
// use; flags registered after a [Set] loaded its values are at their
// default until the next load names them.
type Registry struct {
	mu  sync.Mutex // serialises registrations
	cat atomic.Pointer[catalog]
}

// catalog is the registered flags, replaced as a whole (copy on write) on
// each registration and read without a lock.
type catalog struct {
	list   []*flag // by index
	byName map[string]*flag
}

// Bool registers a boolean flag with its default (the value while the
// values file says nothing about it). It panics with a *DefinitionError
// when def lacks a field, has a malformed name or date, or names a flag
// already registered: definitions are part of the program, and a broken
// one is found when the program (or any of its tests) starts, as with
// regexp.MustCompile.
func (r *Registry) Bool(def Def, dflt bool) *Bool {
	d := 0
	if dflt {
		d = 1
	}
	f := r.register(def, KindBool, []string{"off", "on"}, []any{false, true}, nil, d)
	return &Bool{f: f}
}

// String registers a flag whose variants are strings; dflt names the
// default variant. It panics as Bool does, and also when there is no
// variant, a variant name repeats, a weight is negative or dflt names no
// variant.
func (r *Registry) String(def Def, dflt string, variants ...Variant[string]) *Variants[string] {
	return register(r, def, KindString, dflt, variants)
}

// Number registers a flag whose variants are numbers, as String does.
func (r *Registry) Number(def Def, dflt string, variants ...Variant[float64]) *Variants[float64] {
	return register(r, def, KindNumber, dflt, variants)
}

// Object registers on r a flag whose variants are values of any type
// (configuration structs, say), as Registry.String does. Evaluations
// return the variant's value itself, shared by every caller: treat it as
// read-only.
func Object[T any](r *Registry, def Def, dflt string, variants ...Variant[T]) *Variants[T] {
	return register(r, def, KindObject, dflt, variants)
}

func register[T any](r *Registry, def Def, kind Kind, dflt string, variants []Variant[T]) *Variants[T] {
	names := make([]string, len(variants))
	boxed := make([]any, len(variants))
	vals := make([]T, len(variants))
	weights := make([]float64, len(variants))
	d := -1
	for i, v := range variants {
		names[i], boxed[i], vals[i], weights[i] = v.Name, v.Value, v.Value, v.Weight
		if v.Name == dflt {
			d = i
		}
		if v.Weight < 0 {
			panic(&DefinitionError{Name: def.Name, Problem: fmt.Sprintf("variant %q has a negative weight", v.Name)})
		}
	}
	switch {
	case len(variants) == 0:
		panic(&DefinitionError{Name: def.Name, Problem: "no variant"})
	case d < 0:
		panic(&DefinitionError{Name: def.Name, Problem: fmt.Sprintf("the default %q is not a variant", dflt)})
	}
	f := r.register(def, kind, names, boxed, weights, d)
	return &Variants[T]{f: f, values: vals}
}

func (r *Registry) register(def Def, kind Kind, variants []string, values []any, weights []float64, dflt int) *flag {
	remove, err := checkDef(def)
	if err == nil {
		seen := map[string]bool{}
		for _, v := range variants {
			switch {
			case !validName.MatchString(v):
				err = &DefinitionError{Name: def.Name, Problem: fmt.Sprintf("variant name %q is not lower-case letters, digits, '-', '_', '.'", v)}
			case seen[v]:
				err = &DefinitionError{Name: def.Name, Problem: fmt.Sprintf("variant %q is defined twice", v)}
			}
			seen[v] = true
		}
	}
	if err != nil {
		panic(err)
	}
	f := &flag{
		info:     Info{Def: def, Kind: kind, Remove: remove, Default: variants[dflt], Variants: variants},
		seed:     seed(def.Name),
		values:   values,
		variants: variants,
		dflt:     dflt,
	}
	if o, ok := splitOutcome(weights); ok {
		o.reason = ReasonDefault
		f.split = &o
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.cat.Load()
	if old == nil {
		old = &catalog{}
	}
	if _, dup := old.byName[def.Name]; dup {
		panic(&DefinitionError{Name: def.Name, Problem: "registered twice"})
	}
	f.index = len(old.list)
	next := &catalog{list: append(slices.Clip(old.list), f), byName: make(map[string]*flag, len(old.list)+1)}
	maps.Copy(next.byName, old.byName)
	next.byName[def.Name] = f
	r.cat.Store(next)
	return f
}

// checkDef refuses a definition that lacks a field or has a malformed
// name or date.
func checkDef(def Def) (time.Time, error) {
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"Name", def.Name}, {"Description", def.Description}, {"Owner", def.Owner}, {"RemoveBy", def.RemoveBy},
	} {
		if strings.TrimSpace(f.v) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return time.Time{}, &DefinitionError{Name: def.Name, Problem: "no " + strings.Join(missing, ", no ")}
	}
	if !validName.MatchString(def.Name) {
		return time.Time{}, &DefinitionError{Name: def.Name, Problem: "the name is not lower-case letters, digits, '-', '_', '.'"}
	}
	remove, err := time.Parse(DateLayout, def.RemoveBy)
	if err != nil {
		return time.Time{}, &DefinitionError{Name: def.Name, Problem: fmt.Sprintf("RemoveBy %q is not a date (%s)", def.RemoveBy, DateLayout)}
	}
	return remove, nil
}

// flags returns the registered flags by index.
func (r *Registry) flags() []*flag {
	if c := r.cat.Load(); c != nil {
		return c.list
	}
	return nil
}

// lookup finds a flag by name, without a lock.
func (r *Registry) lookup(name string) *flag {
	if c := r.cat.Load(); c != nil {
		return c.byName[name]
	}
	return nil
}

// Flags describes every registered flag, sorted by name.
func (r *Registry) Flags() []Info {
	list := r.flags()
	out := make([]Info, len(list))
	for i, f := range list {
		out[i] = f.info
	}
	slices.SortFunc(out, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Lookup describes the flag called name.
func (r *Registry) Lookup(name string) (Info, bool) {
	if f := r.lookup(name); f != nil {
		return f.info, true
	}
	return Info{}, false
}

// Expired describes the flags past their removal date at now, sorted by name.
func (r *Registry) Expired(now time.Time) []Info {
	var out []Info
	for _, i := range r.Flags() {
		if i.Expired(now) {
			out = append(out, i)
		}
	}
	return out
}
