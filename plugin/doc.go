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
// path; the Go interface the host uses is its type parameter. The program
// runs the triggers: [Manager.Watch] in a goroutine of its own, and
// [Manager.Reload] for SIGUSR2 through handoff.Options.Reload (SIGHUP stays
// the upgrade of the host binary):
//
//	m, err := plugin.New(ctx, plugin.Options[Greeter]{
//		Handshake: shared.Handshake,
//		Plugins:   shared.Plugins,
//		Path:      "/srv/plugins/greeter",
//		Logger:    log,
//	})
//	...
//	defer m.Close()   // ends Watch, and waits for it
//	go m.Watch(ctx)   // reloads Path whenever the file changes
//	err = handoff.Run(ctx, handoff.Options{Reload: m.Reload, Logger: log}, handoff.HTTP(srv))
//
// and, in a handler:
//
//	err = m.Call(ctx, userID, func(g Greeter) error {
//		msg, err = g.Greet(ctx, name)
//		return err
//	})
//
// examples/pluginhost is that program in full. The Manager installs no
// signal handler and starts no watcher of its own.
//
// # Loading a version
//
// Swap, Canary, Reload and Watch all load a binary the same way, and refuse
// it with a *[LoadError] naming the failed [Phase] while the serving version
// keeps serving:
//
//  1. stage: copy the file into the staging directory under its own sha256,
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
// Only one of Swap, Canary, Reload, Promote and Rollback runs at a time: the
// others return [ErrBusy] at once rather than queue. A load of Watch waits
// for the running operation instead, since the file change it reports must
// not be lost.
//
// # Crashes, Close and the host's death
//
// A plugin process that exits on its own is restarted from the same staged
// binary, at once the first time and then with a doubling backoff. Calls in
// flight when it died fail with [ErrPluginExited] (the manager cannot know
// whether the plugin acted on them, so it does not retry); calls made while
// it restarts wait for it or fail with [ErrRestarting] (Options.OnCrash).
// Close drains and kills every process, waits for it to exit, and removes
// the Manager's private directory.
//
// That directory, handoff-plugin-* in the system's temporary directory,
// holds the staged binaries (unless Options.StageDir is set) and the
// plugins' unix sockets, and a lock file the Manager holds locked (flock)
// for its life. A host killed with SIGKILL cannot remove it, but the kernel
// drops its lock: the next New, in any process of the same user, removes
// every such directory whose lock it can take (EventReclaimed), and leaves
// those of live Managers alone.
//
// On Linux every plugin is started with a parent-death signal (SIGKILL), so
// a host killed with SIGKILL takes its plugins with it. The kernel sends that
// signal when the forking *thread* exits, so the Manager forks every plugin
// from one goroutine locked to its OS thread for the Manager's life. Other
// systems have no such signal: there a plugin outlives a killed host.
//
// # Canaries
//
// With Options.Canary.Percent set, Reload (and so Watch) starts a new
// version as a canary: it answers that share of the keys passed to Call,
// chosen by a stable hash so one user stays on one version. It is promoted
// after a number of calls or a time, or rolled back as soon as its error
// rate crosses a threshold; see [CanaryOptions]. Versions keeps the history
// with ids, sums and timings, and Rollback returns to the previous version.
//
// # Events and logs
//
// Every change is an [Event], passed to Options.OnEvent and logged as one
// record "plugin: <kind>" with the attributes event, duration (when set),
// error (when set), then the event's fields in snake_case (version,
// previous, plugin_pid, ...). The Manager's records, go-plugin's, and every
// line the plugin writes to stderr (output=stderr) go to Options.Logger,
// which discards them when nil; go-plugin's hclog output is adapted to slog
// with the same keys (a plugin logging JSON with hclog keeps its levels).
//
// # Platforms
//
// Linux has everything above. macOS and the BSDs have all but the
// parent-death signal. On Windows the package works where go-plugin does
// (plugins over TCP); there is no file lock a dead host releases, so a
// killed host's private directory is not reclaimed.
//
// [go-plugin]: https://github.com/hashicorp/go-plugin
package plugin
