// Package plugin hot-swaps [go-plugin] plugins: a [Manager] runs one plugin
// binary as a child process and replaces it with a new version while calls
// keep flowing, with none failed. Each call leases the version current when
// it starts (a [reload.Value] of routes), so every RPC of one call is
// answered by one version; a replaced process is killed only after its last
// call has returned, or at Options.DrainTimeout.
//
// Users import go-plugin beside it, as
//
//	import goplugin "github.com/hashicorp/go-plugin"
//
// and write the plugin and its plugin map as go-plugin documents (gRPC or
// net/rpc). The Manager takes the handshake, the plugin map and the binary's
// path; the Go interface the host uses is its type parameter:
//
//	m, err := plugin.New(ctx, plugin.Options[Greeter]{
//		Handshake: shared.Handshake,
//		Plugins:   shared.Plugins,
//		Path:      "/srv/plugins/greeter",
//		Watch:     true,
//	})
//	...
//	err = m.Call(ctx, userID, func(g Greeter) error {
//		msg, err = g.Greet(ctx, name)
//		return err
//	})
//
// # Loading a version
//
// Swap, Canary, Reload, the watcher and the signals all load a binary the
// same way, and refuse it with a *[LoadError] naming the failed [Phase] while
// the serving version keeps serving:
//
//  1. stage: copy the file into Options.StageDir under its own sha256,
//     hashing while copying; refuse it if the file changed during the copy
//     ([ErrChanged]) or its sum is not in Options.Checksums ([ErrChecksum]).
//     A binary whose sum is the running one's changes nothing.
//  2. start: hash the staged copy again (a fresh hash per start, crash
//     restarts included) and exec it, then go-plugin's handshake; bounded by
//     Options.StartTimeout and the caller's context.
//  3. dispense, then health: Options.Health, or go-plugin's Ping.
//  4. swap: new calls go to the new version; the old one drains and is
//     killed in the background (Close waits for it).
//
// go-plugin's own SecureConfig checks the path before exec, so a file
// replaced after the check runs unchecked; staging closes that gap: what
// runs is a read-only file in a private directory, named by its content.
//
// # Crashes, Close and the host's death
//
// A plugin process that exits on its own is restarted from the same staged
// binary, at once the first time and then with a doubling backoff. Calls in
// flight when it died fail with [ErrPluginExited] (the manager cannot know
// whether the plugin acted on them, so it does not retry); calls made while
// it restarts wait for it or fail with [ErrRestarting] (Options.OnCrash).
// Close drains and kills every process and waits for it to exit.
//
// On Linux every plugin is started with a parent-death signal (SIGKILL), so
// a host killed with SIGKILL takes its plugins with it. The kernel sends that
// signal when the forking *thread* exits, so the Manager forks every plugin
// from one goroutine locked to its OS thread for the Manager's life. Other
// systems have no such signal: there a plugin outlives a killed host.
//
// # Canaries
//
// With Options.Canary.Percent set, Reload (and the watcher, and the
// signals) starts a new version as a canary: it answers that share of the
// keys passed to Call, chosen by a stable hash so one user stays on one
// version. It is promoted after a number of calls or a time, or rolled back
// as soon as its error rate crosses a threshold; see [CanaryOptions]. Every
// step is an [Event] and a slog record; Versions keeps the history with
// ids, sums and timings, and Rollback returns to the previous version.
//
// # Logs
//
// The Manager's records, go-plugin's, and every line the plugin writes to
// stderr go to Options.Logger (go-plugin's hclog output is adapted to slog;
// a plugin logging JSON with hclog keeps its levels).
//
// [go-plugin]: https://github.com/hashicorp/go-plugin
package plugin
