package bundle

import "errors"

// Errors a refused bundle wraps, for callers that branch on the reason.
// The message around them names the entry and the limit or value at fault.
var (
	// ErrUnsafePath: an entry name with "..", an absolute path, a
	// backslash or a NUL (path traversal, zip-slip).
	ErrUnsafePath = errors.New("unsafe path")
	// ErrEscapingSymlink: a symbolic link (or hard link) that points
	// outside the bundle, or nowhere.
	ErrEscapingSymlink = errors.New("symlink leaves the bundle")
	// ErrTooLarge: more files or bytes than Options.MaxFiles or
	// Options.MaxBytes allow (zip bombs included: sizes are enforced while
	// decompressing, not taken from the archive's headers).
	ErrTooLarge = errors.New("bundle too large")
	// ErrManifest: the manifest named by Options.Manifest is missing,
	// malformed, or does not match the files.
	ErrManifest = errors.New("manifest mismatch")
	// ErrChecksum: the checksum from Options.Checksum does not match.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrFormat: not a directory, zip or tar.gz, or an archive that is
	// unreadable or truncated.
	ErrFormat = errors.New("unreadable bundle")
)
