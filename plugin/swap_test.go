package plugin

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-go/handoff/plugin/internal/testplugin"
)

// oneVersion makes three RPCs, with a pause in the middle, and checks one
// version answered all three.
func oneVersion(ctx context.Context, g testplugin.Greeter) (string, error) {
	v1, err := g.Version(ctx)
	if err != nil {
		return "", err
	}
	s, err := g.Greet(ctx, "sleep=1ms")
	if err != nil {
		return "", err
	}
	v2, err := g.Version(ctx)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(s, v1+":") || v2 != v1 {
		return "", fmt.Errorf("mixed versions in one call: %q, %q, %q", v1, s, v2)
	}
	return v1, nil
}

// Acceptance a: 16 callers, 100 swaps between two versions.
func TestSwapUnderLoad(t *testing.T) {
	const callers, swaps = 16, 100
	ev := newEvents()
	opts := baseOptions(t, bins["v1"])
	opts.OnEvent = ev.on
	m := newManager(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var (
		stop          atomic.Bool
		calls, failed atomic.Int64
		seen          sync.Map
		firstErr      atomic.Value
		wg            sync.WaitGroup
	)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 1_000_000 && !stop.Load(); n++ {
				var got string
				err := m.Call(ctx, fmt.Sprint("user-", i, "-", n), func(g testplugin.Greeter) error {
					var err error
					got, err = oneVersion(ctx, g)
					return err
				})
				calls.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				seen.Store(got, true)
			}
		}()
	}
	for i := range swaps {
		bin := bins[[]string{"v2", "v1"}[i%2]]
		if _, err := m.Swap(ctx, bin); err != nil {
			t.Fatalf("swap %d: %v", i, err)
		}
	}
	stop.Store(true)
	wg.Wait()

	t.Logf("%d calls, %d failed, %d swaps, %d retired", calls.Load(), failed.Load(), ev.count(EventSwapped), ev.count(EventRetired))
	if n := failed.Load(); n != 0 {
		t.Errorf("%d of %d calls failed; first: %v", n, calls.Load(), firstErr.Load())
	}
	for _, v := range []string{"v1", "v2"} {
		if _, ok := seen.Load(v); !ok {
			t.Errorf("no call answered by %s", v)
		}
	}
	if n := ev.count(EventSwapped); n != swaps+1 {
		t.Errorf("%d swapped events, want %d", n, swaps+1)
	}
	m.Close()
	if kids := children(t); len(kids) != 0 {
		t.Errorf("plugin processes left: %v", kids)
	}
	if n := ev.count(EventRetired); n != swaps+1 {
		t.Errorf("%d retired events, want %d (every process killed once)", n, swaps+1)
	}
	for _, e := range ev.all {
		if e.Kind == EventRetired && e.Forced {
			t.Errorf("%s was killed at the drain deadline", e.Version)
		}
	}
}

// A call in flight during a swap finishes on the version it started on, and
// the old process stays until it has.
func TestSwapDrainsInFlight(t *testing.T) {
	ev := newEvents()
	opts := baseOptions(t, bins["v1"])
	opts.OnEvent = ev.on
	m := newManager(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	started := make(chan struct{})
	release := make(chan struct{})
	result := make(chan string, 1)
	go func() {
		var s string
		err := m.Call(ctx, "", func(g testplugin.Greeter) error {
			close(started)
			<-release // hold the lease across the swap
			var err error
			s, err = g.Greet(ctx, "late")
			return err
		})
		if err != nil {
			s = "error: " + err.Error()
		}
		result <- s
	}()
	<-started
	if _, err := m.Swap(ctx, bins["v2"]); err != nil {
		t.Fatal(err)
	}
	// New calls go to v2 while the old call still holds v1.
	var now string
	if err := m.Call(ctx, "", func(g testplugin.Greeter) error {
		var err error
		now, err = g.Version(ctx)
		return err
	}); err != nil || now != "v2" {
		t.Fatalf("after swap: %q, %v", now, err)
	}
	if n := ev.count(EventRetired); n != 0 {
		t.Fatalf("old version retired while a call held it")
	}
	close(release)
	if got := <-result; got != "v1:hello late" {
		t.Fatalf("in-flight call got %q, want the old version's answer", got)
	}
	e := ev.wait(t, EventRetired)
	if e.Forced {
		t.Error("drain was forced")
	}
}

// A call that outlives the drain deadline is ended by the kill, with
// ErrPluginExited.
func TestDrainDeadline(t *testing.T) {
	ev := newEvents()
	opts := baseOptions(t, bins["v1"])
	opts.OnEvent = ev.on
	opts.DrainTimeout = 200 * time.Millisecond
	m := newManager(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	inCall := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- m.Call(ctx, "", func(g testplugin.Greeter) error {
			close(inCall)
			_, err := g.Greet(ctx, "sleep=60s")
			return err
		})
	}()
	<-inCall
	if _, err := m.Swap(ctx, bins["v2"]); err != nil {
		t.Fatal(err)
	}
	e := ev.wait(t, EventRetired)
	if !e.Forced {
		t.Error("retired event not marked forced")
	}
	if err := <-errc; !errors.Is(err, ErrPluginExited) {
		t.Fatalf("call cut by the deadline: %v, want ErrPluginExited", err)
	}
}

func TestVersionsAndRollback(t *testing.T) {
	m := newManager(t, baseOptions(t, bins["v1"]))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	version := func() string {
		var v string
		if err := m.Call(ctx, "", func(g testplugin.Greeter) error {
			var err error
			v, err = g.Version(ctx)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	v2, err := m.Swap(ctx, bins["v2"])
	if err != nil {
		t.Fatal(err)
	}
	if v2.State != StateServing || v2.SHA256 == "" || v2.PID == 0 || filepath.Base(v2.Staged) != v2.SHA256 {
		t.Fatalf("swap returned %+v", v2)
	}
	if got := version(); got != "v2" {
		t.Fatalf("after swap: %s", got)
	}
	back, err := m.Rollback(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := version(); got != "v1" {
		t.Fatalf("after rollback: %s (%+v)", got, back)
	}
	if _, err := m.Rollback(ctx); err != nil { // rolls forward
		t.Fatal(err)
	}
	if got := version(); got != "v2" {
		t.Fatalf("after second rollback: %s", got)
	}
	vs := m.Versions()
	if len(vs) != 2 {
		t.Fatalf("versions: %+v", vs)
	}
	if vs[0].State != StateServing || vs[1].State != StateRetired || vs[1].Serving.IsZero() || vs[0].Start <= 0 {
		t.Fatalf("versions: %+v", vs)
	}
	// Loading the same binary again changes nothing.
	again, err := m.Swap(ctx, bins["v2"])
	if err != nil || again.ID != vs[0].ID {
		t.Fatalf("same binary: %+v, %v", again, err)
	}
}
