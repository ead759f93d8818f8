package flags

import (
	"time"

	"github.com/handoff-go/handoff/reload"
)

// Attr is an attribute of the subject of an evaluation (a user's country,
// plan, ...), matched by the values file's rules.
type Attr struct {
	Name, Value string
}

// Snapshot is one version of a Set's values, leased: every evaluation
// through it sees that version, however many swaps happen meanwhile, so
// one request takes one Snapshot and evaluates all its flags with it.
// Release it when done, exactly once. The zero Snapshot evaluates every
// flag to its default.
type Snapshot struct {
	lease reload.Lease[*Values]
	vals  *Values
	set   *Set
}

// Release ends the lease on the values. Evaluations through the
// Snapshot must not follow it.
func (s Snapshot) Release() { s.lease.Release() }

// Seq is the values version's sequence number (reload.Version.Seq);
// 0 for the zero Snapshot.
func (s Snapshot) Seq() uint64 {
	if v := s.lease.Version(); v != nil {
		return v.Seq
	}
	return 0
}

// Values returns the values evaluated (nil for the zero Snapshot).
func (s Snapshot) Values() *Values { return s.vals }

// Exposure reports that a key was given a variant of a flag, for A/B
// analysis (see Options.OnExposure).
type Exposure struct {
	Time    time.Time
	Flag    string
	Variant string // "on" or "off" for a Bool
	Key     string
	Seq     uint64 // the values version (Snapshot.Seq)
	Reason  Reason
}

// decide evaluates flag f for key.
func (s Snapshot) decide(f *flag, key string, attrs []Attr) (int, Reason) {
	var e *entry
	if s.vals != nil && f.index < len(s.vals.entries) {
		e = s.vals.entries[f.index]
	}
	var i int
	var why Reason
	switch {
	case e == nil && f.split == nil:
		i, why = f.dflt, ReasonDefault
	case e == nil:
		i, why = f.split.decide(f.seed, key)
	case e.deny != nil && e.deny[key]:
		i, why = e.denyTo, ReasonTargeting
	default:
		if e.allow != nil {
			if v, ok := e.allow[key]; ok {
				i, why = v, ReasonTargeting
				break
			}
		}
		o := &e.rest
		for r := range e.rules {
			if e.rules[r].match(attrs) {
				o = &e.rules[r].then
				break
			}
		}
		i, why = o.decide(f.seed, key)
	}
	if s.set != nil && s.set.expose != nil {
		s.set.exposed(f, i, why, key, s.Seq())
	}
	return i, why
}

func (o *outcome) decide(seed uint64, key string) (int, Reason) {
	if o.fixed >= 0 {
		return o.fixed, o.reason
	}
	b := bucketFrom(seed, key)
	for _, x := range o.split {
		if b < x.upper {
			return x.variant, o.reason
		}
	}
	return o.split[len(o.split)-1].variant, o.reason // not reached: the last bound is Buckets
}

func (r *rule) match(attrs []Attr) bool {
	for _, a := range attrs {
		if a.Name != r.attr {
			continue
		}
		for _, v := range r.values {
			if v == a.Value {
				return true
			}
		}
	}
	return false
}

// Bool is a boolean flag, registered with [Registry.Bool]. Its methods
// are safe for concurrent use and allocate nothing.
type Bool struct {
	f *flag
}

// Name is the flag's name.
func (b *Bool) Name() string { return b.f.info.Name }

// Info describes the flag.
func (b *Bool) Info() Info { return b.f.info }

// Enabled reports whether the flag is on for key (a user id, an account
// id: the subject whose assignment must be stable) in the values of s.
// attrs are matched by the values' rules. The same key gets the same
// answer on every instance and after every restart for the same values.
func (b *Bool) Enabled(s Snapshot, key string, attrs ...Attr) bool {
	i, _ := s.decide(b.f, key, attrs)
	return i == 1
}

// Variants is a flag with named variants whose values are of type T,
// registered with [Registry.String], [Registry.Number] or [Object]. Its
// methods are safe for concurrent use and allocate nothing.
type Variants[T any] struct {
	f      *flag
	values []T
}

// Name is the flag's name.
func (v *Variants[T]) Name() string { return v.f.info.Name }

// Info describes the flag.
func (v *Variants[T]) Info() Info { return v.f.info }

// Get returns the value of the variant key gets in the values of s.
func (v *Variants[T]) Get(s Snapshot, key string, attrs ...Attr) T {
	i, _ := s.decide(v.f, key, attrs)
	return v.values[i]
}

// Variant returns the name and the value of the variant key gets in the
// values of s.
func (v *Variants[T]) Variant(s Snapshot, key string, attrs ...Attr) (string, T) {
	i, _ := s.decide(v.f, key, attrs)
	return v.f.variants[i], v.values[i]
}

// Evaluation is the outcome of [Snapshot.Evaluate].
type Evaluation struct {
	Kind    Kind
	Variant string // "on" or "off" for a Bool
	Value   any    // bool, string, float64, or the Object's T
	Reason  Reason
}

// Evaluate evaluates the flag called name for key, for callers that know
// flags by name (the OpenFeature provider, an admin page). It reports
// false for a flag the Registry does not have. Prefer the typed handles
// (Bool, Variants) in code: the analyzer of flags/flagcheck follows them.
func (s Snapshot) Evaluate(name, key string, attrs ...Attr) (Evaluation, bool) {
	if s.set == nil {
		return Evaluation{}, false
	}
	f := s.set.reg.lookup(name)
	if f == nil {
		return Evaluation{}, false
	}
	i, why := s.decide(f, key, attrs)
	return Evaluation{Kind: f.info.Kind, Variant: f.variants[i], Value: f.values[i], Reason: why}, true
}
