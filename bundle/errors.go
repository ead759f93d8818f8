package bundle

import "errors"

// Errors a refused bundle wraps, for callers that branch on the reason.
// The message around them names the entry and the limit or value at fault.
var (
	// ErrUnsafePath: an entry name with "..", an absolute path, a
	// backslash or a NUL (path traversal, zip-slip).
	ErrUnsafePath = errors.New("bundle: unsafe path")
	// ErrEscapingSymlink: a symbolic link (or an archive's hard link) that
	// points outside the bundle, or nowhere.
	ErrEscapingSymlink = errors.New("bundle: link leaves the bundle")
	// ErrHardLink: a regular file of a directory bundle that has more than
	// one link. Its other names may lie outside the bundle (a file anyone
	// who can write the bundle directory has linked in, /etc/passwd say),
	// and nothing tells where they are; Options.AllowHardLinks accepts such
	// files, for deploys that hard-link release directories.
	ErrHardLink = errors.New("bundle: hard-linked file")
	// ErrTooLarge: more files or bytes than Options.MaxFiles or
	// Options.MaxBytes allow (zip bombs included: sizes are enforced while
	// decompressing, not taken from the archive's headers).
	ErrTooLarge = errors.New("bundle: too large")
	// ErrManifest: the manifest named by Options.Manifest is missing,
	// malformed, or does not match the files.
	ErrManifest = errors.New("bundle: manifest mismatch")
	// ErrChecksum: the checksum from Options.Checksum does not match.
	ErrChecksum = errors.New("bundle: checksum mismatch")
	// ErrFormat: not a directory, zip or tar.gz, or an archive that is
	// unreadable or truncated.
	ErrFormat = errors.New("bundle: unreadable")
)
