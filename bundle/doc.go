// Package bundle serves a static front end (a directory, a .zip or a
// .tar.gz) as an http.Handler, and swaps it for a new version atomically,
// with no restart, on reload's Value.
//
// A bundle is read whole into memory, checked and hashed before it can be
// served: a swap is one atomic pointer store, a request leases the version
// it started with for its whole duration (so one request never mixes two
// versions), and responses come from memory with precomputed headers. On
// Linux, files of 256 KiB and more are also kept in an unlinked temporary
// file, closed when their bundle is released, so that their responses leave
// through sendfile(2) as http.FileServer's do.
//
// # Swapping
//
// A [Handler] serves the bundle at one path. [Handler.Reload] loads it
// again now; [Handler.Watch] runs until its context ends and reloads it
// whenever it changes. Neither installs a signal handler: a program passes
// Reload to handoff.Options.Reload, so that SIGUSR2 swaps the bundle
// (SIGHUP upgrades the binary), and runs Watch in a goroutine of its own
// (see examples/bundle):
//
//	site := bundle.New("/srv/www/current", bundle.Options{Fallback: "index.html"})
//	defer site.Close()
//	if err := site.Reload(ctx); err != nil {
//		return err // no bundle, no service
//	}
//	var wg sync.WaitGroup
//	defer wg.Wait()
//	ctx, cancel := context.WithCancel(ctx)
//	defer cancel()
//	wg.Go(func() { site.Watch(ctx) }) // failed loads are logged and reported
//	srv := &http.Server{Addr: addr, Handler: site}
//	return handoff.ListenAndServe(srv, handoff.Options{Reload: site.Reload})
//
// Loads never overlap, whichever starts them, and a bundle whose content is
// the current one's (same ID) swaps nothing.
//
// # Version skew
//
// A browser that loaded the previous index.html asks, after the swap, for
// the previous hashed chunks (/assets/index-3f2a9c1b.js), which the new
// bundle no longer has. The Handler keeps every bundle replaced less than
// Options.Grace ago (DefaultGrace, 5 minutes), however many swaps happened
// since (up to reload.MaxRetainedFor), and serves a path missing from the
// current bundle from the newest of them that has it. Paths present in the
// current bundle always come from it. Options.Retain more bundles stay
// loaded past Grace for Value().Rollback, but are not served from.
//
// # Caching
//
// Every file gets a strong ETag from its SHA-256 and If-None-Match answers
// 304. Content-hashed names (see HashedName, or Options.Immutable) get
// "Cache-Control: public, max-age=31536000, immutable"; everything else,
// index.html included, "no-cache", so browsers revalidate entry documents
// on every load. A file with precompressed siblings (app.js.br, app.js.gz)
// is served in the best encoding the request's Accept-Encoding allows, with
// "Vary: Accept-Encoding". No Last-Modified header is sent: archive and
// copy times say nothing about content, ETags do.
//
// # Refused bundles
//
// A bundle is refused, and the current one keeps serving, when an entry
// name is unsafe (.., absolute, backslash: zip-slip), a symlink or an
// archive's hard link leaves the bundle or dangles, a file of a directory
// bundle has other hard links (which may lie outside it; see
// Options.AllowHardLinks), it holds more than Options.MaxFiles files or
// Options.MaxBytes bytes (enforced while decompressing, so zip and gzip
// bombs stop at the limit), the Options.Manifest (sha256sum format) or
// Options.Checksum does not match, the archive is unreadable or truncated
// (a zip without its central directory, a gzip stream with a missing or
// wrong trailer), or Options.Validate says no. Errors name the entry and
// the limit, and wrap ErrUnsafePath, ErrEscapingSymlink, ErrHardLink,
// ErrTooLarge, ErrManifest, ErrChecksum or ErrFormat.
//
// # Deploying
//
// Write the new bundle next to the live one and rename it into place
// (mv -T for a directory symlink); Watch sees the rename and loads once.
// Because a half-written archive does not parse and an unchanged one has
// the same ID, even a slow in-place copy ends in exactly one swap (see
// package reload on complete content). Directories are best switched by a
// symlink swap too; a directory edited in place is loaded after its writes
// have been quiet for Options.Debounce. Kubernetes ConfigMap volumes work
// as they are: the `..data` internals are skipped and the visible symlinks
// followed.
//
// bundle builds everywhere Go does; hard links are refused on Unix and
// Windows (elsewhere the link count is not known).
package bundle
