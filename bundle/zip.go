package bundle

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
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
