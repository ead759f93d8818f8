package plugin

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/handoff-go/handoff/plugin/internal/testplugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEventKindString(t *testing.T) {
	for k := EventStaged; k <= EventReclaimed; k++ {
		s := k.String()
		assert.NotEqual(t, "unknown", s, "kind %d", int(k))
		assert.Equal(t, strings.ToLower(s), s)
		assert.NotContains(t, s, " ")
	}
	assert.Equal(t, "canary-rolled-back", EventCanaryRolledBack.String())
	assert.Equal(t, "unknown", EventKind(0).String())
	assert.Equal(t, "unknown", (EventReclaimed + 1).String())
}

// Every event is one record, "plugin: <kind>", with the project's keys
// (event, duration when set, error when set, at Warn or above), and no
// record, the Manager's, go-plugin's or the plugin's, uses pid, err, took
// or go-plugin's logger name, or repeats a key (plugin).
func TestEventRecords(t *testing.T) {
	h := newRecorder()
	ev := newEvents()
	opts := baseOptions(t, bins["v1"])
	opts.Logger = slog.New(h)
	opts.OnEvent = ev.on
	m := newManager(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := m.Swap(ctx, bins["v2"])
	require.NoError(t, err)
	ev.wait(t, EventRetired)
	_, err = m.Swap(ctx, bins["unhealthy"])
	require.Error(t, err)
	cur, _, _ := m.Current()
	killPID(t, cur.PID)
	ev.wait(t, EventRestarted)
	require.NoError(t, m.Close())

	events, records := ev.list(), h.all()
	for _, r := range records {
		seen := map[string]bool{}
		for _, a := range r.attrs {
			assert.False(t, seen[a.Key], "key %s twice in %q", a.Key, r.msg)
			seen[a.Key] = true
			assert.NotContains(t, []string{"pid", "err", "took", "id", "logger"}, a.Key, "in %q", r.msg)
		}
		assert.Equal(t, testplugin.Name, r.attr("plugin"), "the plugin key of %q", r.msg)
	}
	byKey := map[string][]record{}
	for _, r := range records {
		if k, ok := r.attr("event").(string); ok {
			key := fmt.Sprint(k, r.attr("version"), r.attr("plugin_pid"))
			byKey[key] = append(byKey[key], r)
		}
	}
	kinds := map[EventKind]bool{}
	for _, e := range events {
		kinds[e.Kind] = true
		assert.False(t, e.Time.IsZero(), "%s has no Time", e.Kind)
		var pid any
		if e.PluginPID != 0 {
			pid = int64(e.PluginPID)
		}
		key := fmt.Sprint(e.Kind, e.Version, pid)
		require.NotEmpty(t, byKey[key], "no record for %+v", e)
		r := byKey[key][0]
		byKey[key] = byKey[key][1:]
		assert.Equal(t, "plugin: "+e.Kind.String(), r.msg)
		assert.Equal(t, e.Duration != 0, r.attr("duration") != nil, "duration of %q", r.msg)
		assert.Equal(t, e.Err != nil, r.attr("error") != nil, "error of %q", r.msg)
		if e.Err != nil {
			assert.GreaterOrEqual(t, r.level, slog.LevelWarn, "level of %q", r.msg)
		}
	}
	for _, k := range []EventKind{EventStaged, EventSwapped, EventRetired, EventRefused, EventCrashed, EventRestarted} {
		assert.True(t, kinds[k], "no %s event", k)
	}
	for key, rs := range byKey {
		assert.Empty(t, rs, "records without an event: %s", key)
	}
}
