package bundle

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
)

func (c *collector) loadZip(ctx context.Context, data []byte) error {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if errors.Is(err, zip.ErrInsecurePath) {
		err = nil // with GODEBUG=zipinsecurepath=0; cleanName names the entry
	}
	if err != nil {
		return c.errorf("%v (truncated or not a zip): %w", err, ErrFormat)
	}
	// Check names, types and the declared sizes first, so that a bomb is
	// refused before anything is decompressed; the sizes are enforced
	// again while decompressing, since an archive can lie about them.
	type job struct {
		f    *zip.File
		name string
		data []byte
	}
	var jobs []job
	var declared uint64
	for _, f := range zr.File {
		name, err := cleanName(f.Name)
		if err != nil {
			return c.errorf("%w", err)
		}
		mode := f.Mode()
		switch {
		case mode.IsDir() || strings.HasSuffix(f.Name, "/"):
			continue
		case mode&fs.ModeSymlink != 0 || mode.IsRegular():
		default:
			return c.errorf("entry %q: unsupported file type %v: %w", f.Name, mode.Type(), ErrFormat)
		}
		if len(jobs) >= c.maxFiles {
			return c.errorf("zip has more than %d files (MaxFiles): %w", c.maxFiles, ErrTooLarge)
		}
		if declared += f.UncompressedSize64; declared > uint64(c.maxBytes) {
			return c.errorf("%q: zip declares more than %d bytes in all (MaxBytes): %w", name, c.maxBytes, ErrTooLarge)
		}
		jobs = append(jobs, job{f: f, name: name})
	}
	// Decompress in parallel: entries are independent.
	err = parallel(len(jobs), func(i int) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := c.readZipEntry(jobs[i].f, jobs[i].name)
		jobs[i].data = data
		return err
	})
	if err != nil {
		return err
	}
	for _, j := range jobs {
		r := &raw{data: j.data}
		if j.f.Mode()&fs.ModeSymlink != 0 {
			r = &raw{link: string(j.data)}
		}
		if err := c.add(j.name, r); err != nil {
			return err
		}
	}
	return nil
}

func (c *collector) readZipEntry(f *zip.File, name string) ([]byte, error) {
	if f.UncompressedSize64 > uint64(c.maxBytes) {
		return nil, c.errorf("%q declares %d bytes, more than %d (MaxBytes): %w", name, f.UncompressedSize64, c.maxBytes, ErrTooLarge)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, c.errorf("%q: %v: %w", name, err, ErrFormat)
	}
	defer rc.Close()
	return c.read(name, rc, int64(f.UncompressedSize64))
}

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
