// Package flags is a stub of github.com/handoff-go/handoff/flags with
// the API the analyzer follows.
package flags

type Def struct{ Name, Description, Owner, RemoveBy string }

type Variant[T any] struct {
	Name   string
	Value  T
	Weight float64
}

type Registry struct{}

type Bool struct{}

type Variants[T any] struct{}

type Snapshot struct{}

type Attr struct{ Name, Value string }

type Evaluation struct{}

func (r *Registry) Bool(def Def, dflt bool) *Bool { return &Bool{} }

func (r *Registry) String(def Def, dflt string, variants ...Variant[string]) *Variants[string] {
	return &Variants[string]{}
}

func (r *Registry) Number(def Def, dflt string, variants ...Variant[float64]) *Variants[float64] {
	return &Variants[float64]{}
}

func Object[T any](r *Registry, def Def, dflt string, variants ...Variant[T]) *Variants[T] {
	return &Variants[T]{}
}

func (b *Bool) Enabled(s Snapshot, key string, attrs ...Attr) bool { return false }

func (v *Variants[T]) Get(s Snapshot, key string, attrs ...Attr) T {
	var zero T
	return zero
}

func (s Snapshot) Evaluate(name, key string, attrs ...Attr) (Evaluation, bool) {
	return Evaluation{}, false
}
