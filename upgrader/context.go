package upgrader

import "context"

type ctxKey struct{}

// NewContext returns a copy of ctx that carries u. The handoff package puts
// the process's Upgrader in every request's context this way, so that a
// handler can report the generation that answered.
func NewContext(ctx context.Context, u *Upgrader) context.Context {
	return context.WithValue(ctx, ctxKey{}, u)
}

// FromContext returns the Upgrader that NewContext put in ctx, if any.
func FromContext(ctx context.Context) (*Upgrader, bool) {
	u, ok := ctx.Value(ctxKey{}).(*Upgrader)
	return u, ok
}
