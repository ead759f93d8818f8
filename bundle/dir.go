package bundle

import (
	"context"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// maxDepth bounds directory nesting, which also stops symlink loops.
const maxDepth = 32

// loadDir reads a directory tree. Symbolic links are followed when they
// resolve inside the (resolved) root and refused otherwise. Entries whose
// name starts with ".." are skipped: they are the internals of Kubernetes'
// atomic volume writer (..data, ..2026_11_24_...), reached through the
// user-visible symlinks.
func (c *collector) loadDir(ctx context.Context, root string) error {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return c.errorf("%v: %w", err, ErrFormat)
	}
	return c.walk(ctx, real, real, "", 0)
}

func (c *collector) walk(ctx context.Context, realRoot, dir, name string, depth int) error {
	if depth > maxDepth {
		return c.errorf("%q: nested more than %d levels (a symlink loop?): %w", name, maxDepth, ErrEscapingSymlink)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return c.errorf("%v: %w", err, ErrFormat)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		cname := path.Join(name, e.Name())
		mode := e.Type()
		if mode&fs.ModeSymlink != 0 {
			target, err := filepath.EvalSymlinks(p)
			if err != nil {
				link, _ := os.Readlink(p)
				return c.errorf("symlink %q -> %q: broken: %w", cname, link, ErrEscapingSymlink)
			}
			rel, err := filepath.Rel(realRoot, target)
			if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
				link, _ := os.Readlink(p)
				return c.errorf("symlink %q -> %q: %w", cname, link, ErrEscapingSymlink)
			}
			fi, err := os.Stat(target)
			if err != nil {
				return c.errorf("%v: %w", err, ErrFormat)
			}
			p, mode = target, fi.Mode().Type()
		}
		switch {
		case mode.IsDir():
			if err := c.walk(ctx, realRoot, p, cname, depth+1); err != nil {
				return err
			}
		case mode.IsRegular():
			if err := c.readFile(p, cname); err != nil {
				return err
			}
		default:
			return c.errorf("%q: unsupported file type %v: %w", cname, mode, ErrFormat)
		}
	}
	return nil
}

func (c *collector) readFile(p, name string) error {
	f, err := os.Open(p)
	if err != nil {
		return c.errorf("%v: %w", err, ErrFormat)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return c.errorf("%v: %w", err, ErrFormat)
	}
	if n, known := linkCount(f, fi); known && n > 1 && !c.hardLinks {
		return c.errorf("%q has %d links, and the others may lie outside the bundle (Options.AllowHardLinks accepts it): %w", name, n, ErrHardLink)
	}
	data, err := c.read(name, f, fi.Size())
	if err != nil {
		return err
	}
	return c.add(name, &raw{data: data})
}
