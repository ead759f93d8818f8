package listener_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/listener"
)

// TestAwaitNow: a condition that holds already returns at once, even with
// a context that is done, after one call of cond.
func TestAwaitNow(t *testing.T) {
	l := wrap(t, listen(t), listener.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	err := l.Await(ctx, func(c listener.Counts) bool {
		calls++
		return c.Open() == 0
	})
	require.NoError(t, err)
	assert.Equal(t, 1, calls)
	assert.Zero(t, listener.Waiters(l.Listener))
}

// TestAwaitWakesOnChange: Await returns once the counts reach the
// condition, woken by the changes themselves (connections accepted, then
// closed); cond may call the listener's methods.
func TestAwaitWakesOnChange(t *testing.T) {
	l := wrap(t, listen(t), listener.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	type result struct {
		err  error
		seen listener.Counts
	}
	await := func(cond func(listener.Counts) bool) (<-chan result, <-chan struct{}) {
		res := make(chan result, 1)
		first := make(chan struct{})
		var calls atomic.Int32
		go func() {
			var seen listener.Counts
			err := l.Await(ctx, func(c listener.Counts) bool {
				if calls.Add(1) == 1 {
					close(first)
				}
				seen = c
				return cond(c)
			})
			res <- result{err, seen}
		}()
		return res, first
	}

	// Two waiters at once, for different conditions.
	three, first3 := await(func(c listener.Counts) bool { return c.Accepted == 3 })
	none, firstNone := await(func(c listener.Counts) bool {
		// cond runs without the lock: calling back is fine.
		return c.Accepted == 3 && l.Counts().Open() == 0
	})
	recvWithin(t, first3, "first check")
	recvWithin(t, firstNone, "first check")
	assert.Equal(t, 2, listener.Waiters(l.Listener))

	var conns []net.Conn
	for range 3 {
		dial(t, l.Addr())
		sc, err := l.Accept()
		require.NoError(t, err)
		conns = append(conns, sc)
	}
	r := recvWithin(t, three, "Await for 3 accepted")
	require.NoError(t, r.err)
	assert.Equal(t, listener.Counts{Active: 3, Accepted: 3}, r.seen)
	select {
	case r := <-none:
		t.Fatalf("Await returned with connections open: %+v %v", r.seen, r.err)
	default:
	}

	for _, sc := range conns {
		require.NoError(t, sc.Close())
	}
	r = recvWithin(t, none, "Await for all closed")
	require.NoError(t, r.err)
	assert.Equal(t, listener.Counts{Accepted: 3}, r.seen)
	assert.Zero(t, listener.Waiters(l.Listener))
}

// TestAwaitContextDone: Await returns when ctx is done, with an error
// wrapping ctx's cause, and leaves no waiter behind.
func TestAwaitContextDone(t *testing.T) {
	l := wrap(t, listen(t), listener.Options{})
	never := func(listener.Counts) bool { return false }

	errStop := errors.New("stop waiting")
	ctx, cancel := context.WithCancelCause(context.Background())
	res := make(chan error, 1)
	checked := make(chan struct{}, 1)
	go func() {
		res <- l.Await(ctx, func(listener.Counts) bool {
			select {
			case checked <- struct{}{}:
			default:
			}
			return false
		})
	}()
	recvWithin(t, checked, "first check")
	cancel(errStop)
	err := recvWithin(t, res, "Await")
	assert.ErrorIs(t, err, errStop)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, listener.Waiters(l.Listener))

	tctx, tcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer tcancel()
	err = l.Await(tctx, never)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Zero(t, listener.Waiters(l.Listener))
}
