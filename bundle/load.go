package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
)

// Load reads the bundle at path (a directory, a .zip or a .tar.gz; the kind
// is told by content, not by name), checks it against the limits, the
// manifest and the checksum in opts, and returns it. Load only uses the
// loading fields of opts (MaxFiles, MaxBytes, AllowHardLinks, Manifest,
// Checksum, Fallback, Validate, Immutable). A refused bundle gives an error
// that names the path and the problem and wraps one of ErrUnsafePath,
// ErrEscapingSymlink, ErrHardLink, ErrTooLarge, ErrManifest, ErrChecksum or
// ErrFormat (or the Validate error).
func Load(ctx context.Context, path string, opts Options) (*Bundle, error) {
	return load(ctx, path, opts.withDefaults(), "bundle: "+path+": ")
}

// load is Load with defaults filled in and prefix before every error
// message (a Handler's errors do not name the path: reload does).
func load(ctx context.Context, path string, opts Options, prefix string) (*Bundle, error) {
	c := &collector{
		prefix: prefix, maxFiles: opts.MaxFiles, maxBytes: opts.MaxBytes,
		hardLinks: opts.AllowHardLinks, files: map[string]*raw{},
	}
	archiveSum, err := c.collect(ctx, path)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(c.files) == 0 {
		return nil, c.errorf("no files: %w", ErrFormat)
	}
	b := build(path, c.files, opts)
	if err := c.check(b, path, archiveSum, opts); err != nil {
		return nil, err
	}
	return b, nil
}

// collect reads the files at path: a directory tree, or an archive whose
// links it then resolves. For an archive it returns the hex SHA-256 of the
// archive file, for Options.Checksum.
func (c *collector) collect(ctx context.Context, path string) (archiveSum string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", c.fsError(path, err)
	}
	if fi.IsDir() {
		return "", c.loadDir(ctx, path)
	}
	data, err := c.readArchive(path, fi.Size())
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	switch {
	case bytes.HasPrefix(data, []byte("PK\x03\x04")), bytes.HasPrefix(data, []byte("PK\x05\x06")):
		err = c.loadZip(ctx, data)
	case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
		err = c.loadTarGz(ctx, data)
	default:
		err = c.errorf("not a directory, a zip or a tar.gz archive: %w", ErrFormat)
	}
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(sum[:]), c.resolveLinks()
}

func (c *collector) readArchive(path string, size int64) ([]byte, error) {
	// An archive is never much larger than what it holds.
	limit := c.maxBytes + c.maxBytes/8 + 1<<20
	if size > limit {
		return nil, c.errorf("archive of %d bytes, more than MaxBytes allows: %w", size, ErrTooLarge)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, c.fsError(path, err)
	}
	return data, nil
}

// fsError reports a failure to read the bundle at path: the message names
// the operation and the cause (the prefix names the path already), and the
// error wraps both ErrFormat and the cause.
func (c *collector) fsError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == path {
		return c.errorf("%s: %w: %w", pe.Op, pe.Err, ErrFormat)
	}
	return c.errorf("%w: %w", err, ErrFormat)
}

// check runs the checks on a built bundle that opts asks for: manifest,
// checksum, fallback document, Validate.
func (c *collector) check(b *Bundle, path, archiveSum string, opts Options) error {
	if opts.Manifest != "" {
		if err := checkManifest(b, opts.Manifest); err != nil {
			return c.errorf("%w", err)
		}
	}
	if opts.Checksum != nil {
		got := b.id
		if archiveSum != "" {
			got = archiveSum
		}
		if err := checkSum(opts.Checksum, path, got); err != nil {
			return c.errorf("%w", err)
		}
	}
	if opts.Fallback != "" && b.files[opts.Fallback] == nil {
		return c.errorf("fallback document %q missing: %w", opts.Fallback, ErrFormat)
	}
	if opts.Validate != nil {
		if err := opts.Validate(b); err != nil {
			return c.errorf("%w", err)
		}
	}
	return nil
}
