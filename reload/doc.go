// Package reload is handoff's one hot-swap mechanism: a versioned value that
// is loaded, validated and swapped atomically while readers keep the version
// they started with, plus a file watcher that reloads it.
//
// # The model
//
// A [Value] holds at most one current [Version]. [Value.Swap] (or
// [Value.Load], which also calls a [Loader]) validates a new value and makes
// it current in one atomic step. A reader calls [Value.Acquire] and gets a
// [Lease] on the current version; it uses [Lease.Value] for as long as its
// work lasts (an HTTP request, an RPC) and then calls [Lease.Release]. A
// replaced version is handed to Options.Release once its last lease ends,
// exactly once. Acquire and Release take no lock and allocate nothing.
//
// A failed load or validation never touches the current version: it is
// reported as an [Event] (Options.OnEvent) and a log record (Options.Logger,
// message "reload: failure", the reason under the key "error") and returned
// to the caller.
//
// # History and rollback
//
// [Value.History] remembers the last Options.History versions: sequence
// number, ID (a content hash or the caller's own id), source, load and
// replacement times, and whether each is current, retained or released.
//
// Rollback keeps values, it does not re-load them: the artifact a bad deploy
// replaced is usually gone from disk by the time someone wants it back. With
// Options.Retain = N the N most recently replaced versions stay loaded, and
// with Options.RetainFor = D so does every version replaced less than D ago
// (up to MaxRetainedFor); [Value.Rollback] makes the newest of them current
// again at once (and the version rolled away from becomes retained, so
// Rollback twice rolls forward); [Value.RollbackTo] picks one by Seq.
// Retained versions are also readable with [Value.AcquirePrevious]; package
// bundle serves the assets of recently replaced bundles that way. By default
// nothing is retained: a replaced version is released as soon as its leases
// end.
//
// As in every handoff package, the zero value of an Options field means its
// default (a named constant), and a negative count or duration means none.
//
// # Watching files
//
// A [Watcher] reloads a Value from a file or a directory. It uses fsnotify on
// the directories, never on the file itself, because editors and deploy
// tools replace files by renaming a new one over them (which silently ends an
// inotify watch on the old file). It follows the path through symbolic links
// and watches the directory of each link, so a Kubernetes ConfigMap or Secret
// volume, where the visible file is a symlink through a `..data` symlink that
// the kubelet renames atomically onto a new `..<timestamp>` directory, is seen
// to change when `..data` is replaced, and the new timestamped directory is
// watched from then on. When the path is a directory, the whole tree under it
// is watched.
//
// # When is a file complete?
//
// fsnotify (in the version handoff uses) reports writes, not the closing of a
// file, so "complete" is decided in three layers:
//
//  1. Debounce: the Watcher loads only once no relevant event has arrived for
//     WatcherOptions.Debounce (DefaultDebounce, 200ms). A burst of writes, an
//     editor's rename-save (rename, create, write, chmod, remove of a backup)
//     and a symlink swap each end up as one load.
//  2. The Loader decides: it must fail on a partial artifact. An archive that
//     is still being written does not parse (a zip has its directory at the
//     end, gzip has a checksum and length trailer); a manifest or a trailer
//     in the format does the same for other files. A failed load keeps the
//     current version and the next event triggers another try, so a writer
//     slower than the debounce period costs a logged failure, never a
//     half-loaded version.
//  3. Content IDs: [Value.Load] does not swap a value whose ID equals the
//     current one, so duplicate events, touch, chmod and a second load of the
//     same bytes give no second reload.
//
// The deploy step that needs none of this is the atomic one: write the new
// artifact next to the live one and rename it into place.
//
// On-demand reloads ([Watcher.Reload], for SIGUSR2 through
// handoff.Options.Reload, or an admin endpoint) share the same path. Loads never overlap, and concurrent Reload
// calls are coalesced into one load that starts after the last of them was
// made (a stricter rule than x/sync/singleflight, which would let a caller
// join a load that began before its change was written).
package reload
