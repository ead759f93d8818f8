package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// Load reads the bundle at path (a directory, a .zip or a .tar.gz; the kind
// is told by content, not by name), checks it against the limits, the
// manifest and the checksum in opts, and returns it. Load only uses the
// loading fields of opts (MaxFiles, MaxBytes, Manifest, Checksum, Fallback,
// Validate, Immutable). A refused bundle gives an error that names the
// problem and wraps one of ErrUnsafePath, ErrEscapingSymlink, ErrTooLarge,
// ErrManifest, ErrChecksum or ErrFormat (or the Validate error).
func Load(ctx context.Context, path string, opts Options) (*Bundle, error) {
	opts = opts.withDefaults()
	c := &collector{source: path, maxFiles: opts.MaxFiles, maxBytes: opts.MaxBytes, files: map[string]*raw{}}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w: %w", err, ErrFormat)
	}
	var archiveSum string // hex SHA-256 of the archive file, for Checksum
	if fi.IsDir() {
		if err := c.loadDir(ctx, path); err != nil {
			return nil, err
		}
	} else {
		data, err := readArchive(path, fi.Size(), opts.MaxBytes)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		archiveSum = hex.EncodeToString(sum[:])
		switch {
		case bytes.HasPrefix(data, []byte("PK\x03\x04")), bytes.HasPrefix(data, []byte("PK\x05\x06")):
			err = c.loadZip(ctx, data)
		case bytes.HasPrefix(data, []byte{0x1f, 0x8b}):
			err = c.loadTarGz(ctx, data)
		default:
			err = c.errorf("not a directory, a zip or a tar.gz archive: %w", ErrFormat)
		}
		if err != nil {
			return nil, err
		}
		if err := c.resolveLinks(); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(c.files) == 0 {
		return nil, c.errorf("no files: %w", ErrFormat)
	}
	b := build(path, c.files, opts)
	if opts.Manifest != "" {
		if err := checkManifest(b, opts.Manifest); err != nil {
			return nil, c.errorf("%w", err)
		}
	}
	if opts.Checksum != nil {
		want, err := opts.Checksum(path)
		if err != nil {
			return nil, c.errorf("checksum: %v: %w", err, ErrChecksum)
		}
		got := b.id
		if archiveSum != "" {
			got = archiveSum
		}
		if want = strings.ToLower(strings.TrimSpace(want)); want != got {
			return nil, c.errorf("expected SHA-256 %s, got %s: %w", want, got, ErrChecksum)
		}
	}
	if opts.Fallback != "" && b.files[opts.Fallback] == nil {
		return nil, c.errorf("fallback document %q missing: %w", opts.Fallback, ErrFormat)
	}
	if opts.Validate != nil {
		if err := opts.Validate(b); err != nil {
			return nil, c.errorf("%w", err)
		}
	}
	return b, nil
}

func readArchive(path string, size, maxBytes int64) ([]byte, error) {
	// An archive is never much larger than what it holds.
	limit := maxBytes + maxBytes/8 + 1<<20
	if size > limit {
		return nil, fmt.Errorf("bundle: %s: archive of %d bytes, more than MaxBytes allows: %w", path, size, ErrTooLarge)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w: %w", err, ErrFormat)
	}
	return data, nil
}
