package metrics

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// descs are the Recorder's metrics. The names follow the peers that
// operators know: Prometheus's own config_last_reload_successful and
// _success_timestamp_seconds, Traefik's and CoreDNS's reloads_total and
// reload_failed_total, Envoy's hot_restart_generation, HAProxy's
// process_stopping.
type descs struct {
	upgrades, rollbackReasons, upgradeDuration, phaseDuration *prometheus.Desc
	lastUpgradeOK, lastUpgradeSuccess                         *prometheus.Desc
	generation, upgradeInProgress, draining                   *prometheus.Desc
	connections, http2, accepted, drains, forced, signals     *prometheus.Desc
	reloads, reloadFailed, rollbacks, lastReloadOK            *prometheus.Desc
	lastReloadSuccess, versionInfo                            *prometheus.Desc
	pluginCalls, canaryShare, canaryRollbacks, promotions     *prometheus.Desc
	pluginCrashes, pluginRestarts, flagEvals                  *prometheus.Desc
}

func newDescs(ns string) descs {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, labels, nil)
	}
	return descs{
		upgrades:           d("upgrades_total", "Upgrades of the binary by outcome (committed, rolled_back); carried across generations.", "outcome"),
		rollbackReasons:    d("upgrade_rollbacks_total", "Upgrades rolled back, by cause; carried across generations.", "reason"),
		upgradeDuration:    d("upgrade_duration_seconds", "Upgrades from trigger to commit or rollback, by outcome; carried across generations.", "outcome"),
		phaseDuration:      d("upgrade_phase_duration_seconds", "Phases of upgrades (spawn, ready, probation, drain); carried across generations.", "phase"),
		lastUpgradeOK:      d("last_upgrade_successful", "1 if the last upgrade committed, 0 if it was rolled back; absent before any."),
		lastUpgradeSuccess: d("last_upgrade_success_timestamp_seconds", "When the last upgrade committed, as a Unix time; absent before any."),
		generation:         d("generation", "The generation of the process that answers: 1 at a first start, one more per upgrade."),
		upgradeInProgress:  d("upgrade_in_progress", "1 while an upgrade is under way, as this process sees it."),
		draining:           d("process_draining", "1 while this process drains its connections (it handed over or stops)."),
		connections:        d("connections", "Open connections of this process by listener and state (active, idle, new, hijacked).", "listener", "state"),
		http2:              d("http2_connections", "Open connections known to speak HTTP/2, by listener (a subset of connections).", "listener"),
		accepted:           d("connections_accepted_total", "Connections this process accepted, by listener.", "listener"),
		drains:             d("drains_total", "Drains this process finished."),
		forced:             d("drain_forced_connections_total", "Connections this process's drains closed at their deadline."),
		signals:            d("signals_total", "Signals this process received, by signal and the action they map to.", "signal", "action"),
		reloads:            d("reloads_total", "Versions of a bundle, plugin or flag set that were loaded and swapped in (a plugin's canaries included).", "kind", "name"),
		reloadFailed:       d("reload_failed_total", "Loads of a bundle, plugin or flag set that were refused (the current version kept serving).", "kind", "name"),
		rollbacks:          d("rollbacks_total", "Rollbacks of a bundle, plugin or flag set (a plugin's canaries rolled back included).", "kind", "name"),
		lastReloadOK:       d("last_reload_successful", "1 if the last load of a bundle, plugin or flag set succeeded, 0 if it was refused.", "kind", "name"),
		lastReloadSuccess:  d("last_reload_success_timestamp_seconds", "When a bundle, plugin or flag set last loaded a version, as a Unix time.", "kind", "name"),
		versionInfo:        d("version_info", "The current version of a bundle, plugin or flag set (value 1).", "kind", "name", "version"),
		pluginCalls:        d("plugin_calls_total", "Calls a plugin answered, by version and outcome (ok, error).", "name", "version", "outcome"),
		canaryShare:        d("plugin_canary_share_ratio", "Share of the keys a plugin's canary answers (0 without a canary).", "name"),
		canaryRollbacks:    d("plugin_canary_rollbacks_total", "Plugin canaries rolled back (automatically or on demand).", "name"),
		promotions:         d("plugin_canary_promotions_total", "Plugin canaries promoted to stable.", "name"),
		pluginCrashes:      d("plugin_crashes_total", "Plugin processes that exited on their own.", "name"),
		pluginRestarts:     d("plugin_restarts_total", "Crashed plugin processes restarted.", "name"),
		flagEvals:          d("flag_evaluations_total", "Flag evaluations by flag set, flag and variant (of the keys the set's ExposureRate samples).", "name", "flag", "variant"),
	}
}

func (d descs) all() []*prometheus.Desc {
	return []*prometheus.Desc{d.upgrades, d.rollbackReasons, d.upgradeDuration, d.phaseDuration,
		d.lastUpgradeOK, d.lastUpgradeSuccess, d.generation, d.upgradeInProgress, d.draining,
		d.connections, d.http2, d.accepted, d.drains, d.forced, d.signals,
		d.reloads, d.reloadFailed, d.rollbacks, d.lastReloadOK, d.lastReloadSuccess, d.versionInfo,
		d.pluginCalls, d.canaryShare, d.canaryRollbacks, d.promotions, d.pluginCrashes, d.pluginRestarts, d.flagEvals}
}

// collector is the Recorder as a prometheus.Collector: every metric is
// made at scrape time from the Recorder's state and the listeners' counts,
// so nothing on a request's path updates a metric.
type collector struct{ r *Recorder }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.r.d.all() {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	r, d := c.r, c.r.d
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	}
	counter := func(desc *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, v, labels...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}

	r.mu.Lock()
	for _, o := range sortedKeys(r.up.outcomes) {
		counter(d.upgrades, float64(r.up.outcomes[o]), o)
	}
	for _, k := range sortedKeys(r.up.reasons) {
		counter(d.rollbackReasons, float64(r.up.reasons[k]), k)
	}
	for _, o := range sortedKeys(r.up.durations) {
		ch <- r.up.durations[o].metric(d.upgradeDuration, o)
	}
	for _, p := range phaseOrder {
		ch <- r.up.phases[p].metric(d.phaseDuration, p)
	}
	if r.up.lastResult != 0 {
		gauge(d.lastUpgradeOK, b2f(r.up.lastResult > 0))
	}
	if !r.up.lastSuccess.IsZero() {
		gauge(d.lastUpgradeSuccess, float64(r.up.lastSuccess.UnixNano())/1e9)
	}
	if r.gen != 0 {
		gauge(d.generation, float64(r.gen))
	}
	gauge(d.upgradeInProgress, b2f(r.up.cur != nil || r.up.own != nil))
	gauge(d.draining, b2f(r.draining))
	counter(d.drains, float64(r.drains))
	counter(d.forced, float64(r.forced))
	for k, n := range r.signals {
		counter(d.signals, float64(n), k.signal, k.action)
	}
	type plug struct {
		name string
		m    pluginManager
	}
	var plugs []plug
	var evals []*component
	for _, cp := range r.comps {
		k, n := string(cp.kind), cp.name
		counter(d.reloads, float64(cp.swaps), k, n)
		counter(d.reloadFailed, float64(cp.failures), k, n)
		counter(d.rollbacks, float64(cp.rollbacks), k, n)
		if cp.lastResult != 0 {
			gauge(d.lastReloadOK, b2f(cp.lastResult > 0), k, n)
		}
		if !cp.lastSuccess.IsZero() {
			gauge(d.lastReloadSuccess, float64(cp.lastSuccess.UnixNano())/1e9, k, n)
		}
		if cp.version != "" {
			gauge(d.versionInfo, 1, k, n, shortID(cp.version))
		}
		switch cp.kind {
		case KindPlugin:
			gauge(d.canaryShare, cp.canaryPercent/100, n)
			counter(d.canaryRollbacks, float64(cp.canaryRollbacks), n)
			counter(d.promotions, float64(cp.promotions), n)
			counter(d.pluginCrashes, float64(cp.crashes), n)
			counter(d.pluginRestarts, float64(cp.restarts), n)
			if cp.plug != nil {
				plugs = append(plugs, plug{n, cp.plug})
			}
		case KindFlags:
			if cp.evals != nil {
				evals = append(evals, cp)
			}
		}
	}
	r.mu.Unlock()

	for _, p := range plugs {
		for _, v := range p.m.Versions() {
			if v.Calls == 0 && v.Serving.IsZero() {
				continue // never served: no series
			}
			counter(d.pluginCalls, float64(v.Calls-v.Errors), p.name, v.ID, "ok")
			counter(d.pluginCalls, float64(v.Errors), p.name, v.ID, "error")
		}
	}
	for _, cp := range evals {
		for k, c := range *cp.evals.m.Load() {
			counter(d.flagEvals, float64(c.Load()), cp.name, k.flag, k.variant)
		}
		if n := cp.evals.overflow.Load(); n > 0 {
			counter(d.flagEvals, float64(n), cp.name, "_other", "_other")
		}
	}
	for _, l := range r.allListeners() {
		name := l.Addr().String()
		cnt := l.Counts()
		gauge(d.connections, float64(cnt.Active), name, "active")
		gauge(d.connections, float64(cnt.Idle), name, "idle")
		gauge(d.connections, float64(cnt.New), name, "new")
		gauge(d.connections, float64(cnt.Hijacked), name, "hijacked")
		gauge(d.http2, float64(cnt.HTTP2), name)
		counter(d.accepted, float64(cnt.Accepted), name)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// shortID shortens a content hash (a bundle's or a values file's sha256)
// to 12 hex digits for a label; other IDs ("v2-…", "defaults") stay.
func shortID(id string) string {
	if len(id) == 64 {
		return id[:12]
	}
	return id
}
