package listener_test

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/listener"
)

// TestCountsConcurrent: transitions, double closes, the idle closer and
// a forced drain all race; counts never go negative or above the number of
// conns, and end at zero.
func TestCountsConcurrent(t *testing.T) {
	const conns, steps = 40, 200
	l := wrap(t, listen(t), listener.Options{IdleGrace: 1})
	var accepted []net.Conn
	for range conns {
		dial(t, l.Addr())
		sc, err := l.Accept()
		require.NoError(t, err)
		accepted = append(accepted, sc)
	}

	stop := make(chan struct{})
	var checker sync.WaitGroup
	checker.Go(func() {
		for {
			c := l.Counts()
			ok := assert.True(t, c.Active >= 0 && c.Idle >= 0 && c.New >= 0 && c.Hijacked >= 0, "negative counts %+v", c)
			if !ok || !assert.LessOrEqual(t, c.Open(), conns, "counts %+v", c) {
				return
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	res := drainAsync(l, ctx)
	<-l.Draining()
	var wg sync.WaitGroup
	for i, sc := range accepted {
		wg.Go(func() {
			seq := []http.ConnState{http.StateActive, http.StateIdle}
			listener.ConnState(sc, http.StateNew)
			for j := range steps {
				listener.ConnState(sc, seq[j%2])
			}
			if i%3 == 0 {
				listener.ConnState(sc, http.StateActive)
				listener.ConnState(sc, http.StateHijacked)
			}
			if i%2 == 0 {
				var both sync.WaitGroup
				both.Go(func() { sc.Close() })
				both.Go(func() { sc.Close() })
				both.Wait()
				listener.ConnState(sc, http.StateClosed)
			}
		})
	}
	wg.Wait()
	cancel() // force-closes whatever is left (odd conns not closed idle)
	r := recvWithin(t, res, "Drain")
	close(stop)
	checker.Wait()
	s := r.stats
	assert.Equal(t, conns, s.Conns, "stats %+v", s)
	assert.Equal(t, conns, s.ClosedIdle+s.ClosedByPeerOrServer+s.Forced, "closes in stats %+v", s)
	assert.Equal(t, listener.Counts{Accepted: conns}, l.Counts(), "final counts")
	assert.Zero(t, listener.Live(l.Listener), "still tracked")
}
