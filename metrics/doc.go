// Package metrics turns the events of handoff's packages into Prometheus
// metrics and into a Status (the data of package admin's page): upgrades by
// outcome with each phase's duration, the generation, connections by state,
// drains, and the hot swaps, rollbacks and canaries of bundles, plugins and
// flag sets. It is the one package of the module that imports
// github.com/prometheus/client_golang; the packages it observes know
// nothing of it.
//
// # Wiring
//
// A Recorder registers on the prometheus.Registerer it is given, or on a
// registry of its own (Options.Registerer nil) that Handler serves; nothing
// is registered on the global registry unless it is passed. It is fed by
// the events every package emits, through the callbacks they already take:
//
//	rec, err := metrics.New(metrics.Options{})
//	...
//	ui := rec.NewBundle("ui", "./dist", bundle.Options{})                  // bundle.New, recorded
//	set := rec.NewFlags("flags", &registry, "flags.json", flags.Options{}) // flags.New, recorded
//	greeter, err := metrics.NewPlugin(ctx, rec, "greeter", plugin.Options[Greeter]{...})
//	admin := &http.Server{Handler: adminHandler} // mounts rec.Handler() at /metrics
//	err = handoff.Run(ctx, handoff.Options{
//		Setup:    rec.Attach,          // generation, listeners, counters carried over
//		OnEvent:  rec.OnUpgraderEvent, // upgrades and drains
//		OnSignal: rec.OnSignalEvent,   // signals
//	}, handoff.HTTP(srv, ":8080"), handoff.HTTP(admin, "127.0.0.1:9090"))
//
// Nothing is updated on a request's path: connection counts are read from
// the listeners (listener.Counts) when Prometheus scrapes, and an event
// costs a mutex. The one per-request cost is opt-in: counting flag
// evaluations (NewFlags) sets flags.Options.OnExposure, which costs each
// evaluation an Exposure (a time.Now) and a lock-free counter, and no
// allocation.
//
// # Metrics
//
// With the default namespace, handoff:
//
//	handoff_upgrades_total{outcome}                    committed, rolled_back       carried
//	handoff_upgrade_rollbacks_total{reason}            spawn, exited, timeout, ...  carried
//	handoff_upgrade_duration_seconds{outcome}          trigger to commit/rollback   carried
//	handoff_upgrade_phase_duration_seconds{phase}      spawn, ready, probation,     carried
//	                                                   drain
//	handoff_last_upgrade_successful                    1 or 0                       carried
//	handoff_last_upgrade_success_timestamp_seconds                                  carried
//	handoff_generation                                 Envoy's hot_restart_generation
//	handoff_upgrade_in_progress
//	handoff_process_draining                           HAProxy's process_stopping
//	handoff_connections{listener,state}                active, idle, new, hijacked
//	handoff_http2_connections{listener}
//	handoff_connections_accepted_total{listener}
//	handoff_drains_total, handoff_drain_forced_connections_total
//	handoff_signals_total{signal,action}
//	handoff_reloads_total{kind,name}                   kind: bundle, plugin, flags
//	handoff_reload_failed_total{kind,name}
//	handoff_rollbacks_total{kind,name}
//	handoff_last_reload_successful{kind,name}
//	handoff_last_reload_success_timestamp_seconds{kind,name}
//	handoff_version_info{kind,name,version}            1 for the current version
//	handoff_plugin_calls_total{name,version,outcome}   ok, error
//	handoff_plugin_canary_share_ratio{name}
//	handoff_plugin_canary_rollbacks_total{name}, handoff_plugin_canary_promotions_total{name}
//	handoff_plugin_crashes_total{name}, handoff_plugin_restarts_total{name}
//	handoff_flag_evaluations_total{name,flag,variant}
//
// The names follow the peers operators know (Prometheus's
// config_last_reload_successful and _success_timestamp_seconds, Traefik's
// and CoreDNS's reloads_total and reload_failed_total, Envoy's
// hot_restart_generation, HAProxy's process_stopping). Label values are
// bounded: outcomes, reasons, phases and states are fixed sets; listeners,
// components and plugin versions are the program's own (a plugin's
// versions as far as plugin.Options.History goes); flag and variant pairs
// are the registry's, and at most Options.MaxFlagSeries per set.
//
// # Continuity across upgrades
//
// Each upgrade is done by two processes, and a scraper only ever reaches
// the one that accepts: once the new generation accepts, the old one is
// paused and then drains, so what the old one counts after that is never
// scraped. The metrics marked "carried" above therefore continue from
// generation to generation: Attach registers a part of the state blob
// (upgrader.SaveStatePart, beside the program's own SaveState, which it
// does not touch) in which an upgrade hands its counters, histograms and
// history to the next generation, with the time it was triggered. The new
// generation counts its own commit and observes the upgrade's phases from
// its own clock (spawn: trigger to its upgrader.New; ready: to accepting;
// probation: to the commit; drain: to the previous generation's exit), so
// handoff_upgrades_total{outcome="committed"} rises by one per upgrade for
// a scraper, never resets, and the histograms hold every upgrade. A
// rollback is counted by the generation that stays. The old generation
// counts the commit too, so that both agree during its drain.
//
// Every other metric is per process: gauges describe the process that
// answers, and its counters (connections accepted, drains, signals, the
// swaps of components, which every generation loads anew) start from zero
// in each generation, which Prometheus's rate() and increase() read as the
// counter resets they are. The connections a handed-over generation closed
// at its drain deadline are counted by it and logged ("upgrader:
// drain-finished", forced), but it is not scraped any more by then.
package metrics
