package bundle

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
)

func (c *collector) loadTarGz(ctx context.Context, data []byte) error {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return c.errorf("gzip: %v: %w", err, ErrFormat)
	}
	// Bound the decompressed stream as a whole: headers and padding count
	// too, and a gzip bomb is cut off here whatever the tar headers say.
	limited := &io.LimitedReader{R: zr, N: c.maxBytes + int64(c.maxFiles+16)*2048}
	tr := tar.NewReader(limited)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, tar.ErrInsecurePath) {
			err = nil // with GODEBUG=tarinsecurepath=0; cleanName names the entry
		}
		if err != nil {
			return c.tarError("", err, limited)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return c.errorf("%w", err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeXGlobalHeader:
			continue
		case tar.TypeReg:
			if err := c.reserve(name, hdr.Size); err != nil {
				return err
			}
			buf := make([]byte, hdr.Size)
			if _, err := io.ReadFull(tr, buf); err != nil {
				return c.tarError(name, err, limited)
			}
			if err := c.add(name, &raw{data: buf}); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := c.add(name, &raw{link: hdr.Linkname}); err != nil {
				return err
			}
		case tar.TypeLink:
			target, err := cleanName(hdr.Linkname)
			if err != nil || target == "" {
				return c.errorf("hard link %q -> %q: %w", hdr.Name, hdr.Linkname, ErrEscapingSymlink)
			}
			if err := c.add(name, &raw{link: target, hard: true}); err != nil {
				return err
			}
		default:
			return c.errorf("entry %q: unsupported tar entry type %q: %w", hdr.Name, hdr.Typeflag, ErrFormat)
		}
	}
	// Read the gzip stream to its end so that its CRC and length trailer
	// are checked: a truncated .tar.gz is refused, not half-served.
	if _, err := io.Copy(io.Discard, limited); err != nil {
		return c.tarError("", err, limited)
	}
	if limited.N <= 0 {
		return c.errorf("decompresses to more than MaxBytes: %w", ErrTooLarge)
	}
	if err := zr.Close(); err != nil {
		return c.errorf("gzip: %v: %w", err, ErrFormat)
	}
	return nil
}

func (c *collector) tarError(name string, err error, limited *io.LimitedReader) error {
	if limited.N <= 0 {
		return c.errorf("decompresses to more than MaxBytes: %w", ErrTooLarge)
	}
	what := "tar.gz"
	if name != "" {
		what = "tar.gz entry " + name
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return c.errorf("%s: truncated archive: %v: %w", what, err, ErrFormat)
	}
	return c.errorf("%s: %v: %w", what, err, ErrFormat)
}
