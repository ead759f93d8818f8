package bundle

import (
	"log/slog"
	"strings"
	"time"

	"github.com/handoff-go/handoff/reload"
)

// Defaults for the zero fields of [Options].
const (
	DefaultMaxFiles = 20_000
	DefaultMaxBytes = 256 << 20 // 256 MiB, uncompressed, in memory
	DefaultGrace    = 10 * time.Minute
	DefaultRetain   = 4
)

// Options configures a [Handler] and [Load]. The zero value is valid.
type Options struct {
	// MaxFiles is the most files a bundle may hold. Default DefaultMaxFiles.
	MaxFiles int
	// MaxBytes is the most bytes a bundle may hold, uncompressed (a bundle
	// is held in memory). Default DefaultMaxBytes.
	MaxBytes int64
	// Manifest names a file inside the bundle, in sha256sum format
	// (`sha256sum $(find . -type f) > SHA256SUMS`), that must list every
	// other file with its SHA-256. Default "": no manifest required.
	Manifest string
	// Checksum, when set, returns the expected SHA-256 (hex) of the bundle
	// at source: of the archive file, or of the bundle ID for a directory.
	// See SidecarChecksum. Default: not checked.
	Checksum func(source string) (string, error)
	// Validate, when set, is a last check on a loaded bundle (for example
	// that it has index.html); an error refuses it.
	Validate func(*Bundle) error

	// Grace is how long the files of a replaced bundle stay servable, for
	// pages loaded before a swap that ask for their hashed assets after it.
	// Only paths missing from the current bundle are looked up in replaced
	// ones. Default DefaultGrace; negative: never.
	Grace time.Duration
	// Retain is how many replaced bundles are kept in memory, for Grace and
	// for Rollback (see reload.Options.Retain). Default DefaultRetain;
	// negative: none.
	Retain int
	// Fallback, when set (typically "index.html"), is served for GET and
	// HEAD requests of unknown paths whose last segment has no extension:
	// the client-side routes of a single-page application. Missing files
	// with an extension (/assets/gone.js) still get 404.
	Fallback string
	// Immutable reports whether a file name is content-hashed, so it is
	// served with "Cache-Control: public, max-age=31536000, immutable";
	// every other file gets "no-cache" (revalidated with its ETag). Default
	// HashedName.
	Immutable func(name string) bool

	// History, Logger and OnEvent are passed to the reload.Value.
	History int
	Logger  *slog.Logger
	OnEvent func(reload.Event)
}

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
	if o.Retain < 0 {
		o.Retain = 0
	}
	if o.Immutable == nil {
		o.Immutable = HashedName
	}
	o.Fallback = strings.TrimPrefix(o.Fallback, "/")
	return o
}
