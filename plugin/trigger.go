package plugin

import (
	"context"
	"fmt"

	"github.com/handoff-go/handoff/reload"
)

// Reload loads Options.Path again now: as a canary when
// Options.Canary.Percent > 0, else as a swap (see Swap). A binary with the
// sha256 of the stable version (or of the running canary) changes nothing.
// It blocks until the new version serves or is refused (a *LoadError, also
// reported as EventRefused); while another swap, reload, rollback or restart
// runs it returns ErrBusy at once. The version now current is in Current.
//
// Reload is the func to pass to handoff.Options.Reload (or
// signal.Actions.Reload), so that SIGUSR2 swaps the plugin.
func (m *Manager[T]) Reload(ctx context.Context) error {
	if err := m.lockOp(); err != nil {
		return err
	}
	defer m.opMu.Unlock()
	ctx, stop := m.opContext(ctx)
	defer stop()
	_, err := m.reloadLocked(ctx)
	return err
}

func (m *Manager[T]) reloadLocked(ctx context.Context) (Version, error) {
	if m.route == nil {
		return Version{}, ErrClosed
	}
	return m.swapLocked(ctx, m.opts.Path, m.opts.Canary.Percent > 0)
}

// Watch reloads Options.Path, as Reload does, each time the file changes,
// until ctx ends; it then returns nil. It watches with reload.Watcher
// (fsnotify, debounced; safe with rename-saves, `mv new path` and Kubernetes
// symlink swaps), and loads once when it starts, so that a change made
// between New and Watch is not missed. A change that arrives while another
// operation runs is loaded after it rather than refused. Each load is
// reported as events (swapped, refused, unchanged...): Watch goes on after
// a refused binary, and the serving version stays.
//
// Watch blocks; the program runs it in a goroutine of its own. It returns
// ErrClosed when the Manager is closed (Close waits for it), and an error
// if the watch cannot be set up (the directory of Options.Path must exist).
func (m *Manager[T]) Watch(ctx context.Context) error {
	m.watchMu.Lock()
	if m.closing {
		m.watchMu.Unlock()
		return ErrClosed
	}
	m.watchers.Add(1)
	m.watchMu.Unlock()
	defer m.watchers.Done()

	w, err := reload.NewWatcher(m.val, m.opts.Path, m.watchLoad, reload.WatcherOptions{Logger: m.log})
	if err != nil {
		return fmt.Errorf("plugin: watch: %w", err)
	}
	defer w.Close()
	wctx, stop := m.opContext(ctx)
	defer stop()
	_, _ = w.Reload(wctx) // reported as events
	err = w.Run(wctx)
	select {
	case <-ctx.Done():
		return nil
	case <-m.closed:
		return ErrClosed
	default:
		return fmt.Errorf("plugin: watch: %w", err)
	}
}

// watchLoad is the watcher's Loader. A plugin swap has steps a single
// reload.Value.Load cannot express (a canary keeps the stable version in
// the same route; an unchanged binary must not start a process), so the
// watcher is used as the debounced, never-overlapping trigger: the load
// does the swap itself and then reports the current route's id with no
// value, which Value.Load takes as "unchanged".
func (m *Manager[T]) watchLoad(ctx context.Context) (*route[T], reload.Info, error) {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	_, err := m.reloadLocked(ctx)
	id := ""
	if m.route != nil {
		id = m.route.id()
	}
	return nil, reload.Info{ID: id, Source: m.opts.Path}, err
}
