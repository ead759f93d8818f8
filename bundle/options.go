package bundle

import (
	"log/slog"
	"strings"
	"time"

	"github.com/handoff-go/handoff/reload"
)

// Defaults for the zero fields of [Options].
const (
	// DefaultMaxFiles is the most files a bundle may hold.
	DefaultMaxFiles = 20_000
	// DefaultMaxBytes is the most bytes a bundle may hold, uncompressed,
	// in memory: 256 MiB.
	DefaultMaxBytes = 256 << 20
	// DefaultGrace is how long a replaced bundle stays loaded and its files
	// servable: 5 minutes, which covers a page load and the lazy chunks a
	// front end fetches as its user moves on from it, with a wide margin.
	// A page kept open longer than that asks for its chunks after they are
	// gone; front ends meet that with a reload of the page (Vite's
	// vite:preloadError, webpack's ChunkLoadError).
	DefaultGrace = 5 * time.Minute
	// DefaultRetain is how many replaced bundles stay loaded beyond Grace,
	// for Rollback.
	DefaultRetain = 4
)

// Options configures a [Handler] and [Load]. The zero value of each field
// means its default, so the zero Options is valid.
type Options struct {
	// MaxFiles is the most files a bundle may hold. Zero means
	// DefaultMaxFiles; the limit cannot be turned off (a negative value is
	// taken as zero).
	MaxFiles int
	// MaxBytes is the most bytes a bundle may hold, uncompressed (a bundle
	// is held in memory). Zero means DefaultMaxBytes; the limit cannot be
	// turned off (a negative value is taken as zero).
	MaxBytes int64
	// AllowHardLinks accepts regular files with more than one link in a
	// directory bundle, which are refused by default (ErrHardLink): set it
	// only where nobody who can write the bundle directory could link in a
	// file that must not be published, for deploys that hard-link release
	// directories (cp -al, rsync --link-dest) or serve from a deduplicated
	// store. Archives are not concerned: their hard links must point inside
	// them.
	AllowHardLinks bool
	// Manifest names a file inside the bundle, in sha256sum format
	// (`sha256sum $(find . -type f) > SHA256SUMS`), that must list every
	// other file with its SHA-256. Zero ("") means none is required.
	Manifest string
	// Checksum, when set, returns the expected SHA-256 (hex) of the bundle
	// at source: of the archive file, or of the bundle ID for a directory.
	// See SidecarChecksum. Nil means no checksum is checked.
	Checksum func(source string) (string, error)
	// Validate, when set, is a last check on a loaded bundle (for example
	// that it has index.html); an error refuses it.
	Validate func(*Bundle) error

	// Fallback, when set (typically "index.html"), is served for GET and
	// HEAD requests of unknown paths whose last segment has no extension:
	// the client-side routes of a single-page application. Missing files
	// with an extension (/assets/gone.js) still get 404. Every bundle must
	// have it.
	Fallback string
	// Immutable reports whether a file name is content-hashed, so it is
	// served with "Cache-Control: public, max-age=31536000, immutable";
	// every other file gets "no-cache" (revalidated with its ETag). Nil
	// means HashedName.
	Immutable func(name string) bool

	// Grace is how long a replaced bundle stays loaded and its files
	// servable, however many swaps follow (up to reload.MaxRetainedFor
	// bundles), for pages loaded before a swap that ask for their hashed
	// assets after it. Only paths missing from the current bundle are
	// looked up in replaced ones. Zero means DefaultGrace; negative: none.
	Grace time.Duration
	// Retain is how many of the most recently replaced bundles stay loaded
	// beyond Grace, for Value().Rollback; their files are served within
	// Grace only. Zero means DefaultRetain; negative: none.
	Retain int
	// History is how many versions Value().History remembers. Zero means
	// reload.DefaultHistory; negative: none.
	History int
	// Debounce is the quiet period of Watch: it loads once the bundle's
	// files have not changed for this long. Zero means
	// reload.DefaultDebounce; negative: none.
	Debounce time.Duration

	// Logger receives one record per event of the bundle's reload.Value
	// and its watcher ("reload: swap", "reload: failure", ...; see
	// reload.Event). Nil discards them.
	Logger *slog.Logger
	// OnEvent, when set, is called synchronously for every reload.Event of
	// the bundle's Value and its watcher; it must not block.
	OnEvent func(reload.Event)
}

// withDefaults fills the defaults of the loading and serving fields into a
// copy of o. The swapping fields are reload's: New passes them on, and
// reload applies the same rule to them.
func (o Options) withDefaults() Options {
	if o.MaxFiles <= 0 {
		o.MaxFiles = DefaultMaxFiles
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Grace == 0 {
		o.Grace = DefaultGrace
	}
	if o.Retain == 0 {
		o.Retain = DefaultRetain
	}
	if o.Immutable == nil {
		o.Immutable = HashedName
	}
	o.Fallback = strings.TrimPrefix(o.Fallback, "/")
	return o
}
