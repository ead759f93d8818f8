package bundle

import (
	"path"
	"slices"
	"strings"
)

// resolveLinks replaces archive symlinks and hard links by the files they
// point to (sharing the data); a link to a directory aliases the files
// under it. Links leaving the bundle or pointing nowhere are refused.
func (c *collector) resolveLinks() error {
	var names []string
	for n, r := range c.files {
		if r.link != "" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		if err := c.resolve(name, 0); err != nil {
			return err
		}
	}
	return nil
}

func (c *collector) resolve(name string, depth int) error {
	r := c.files[name]
	if r == nil || r.link == "" {
		return nil
	}
	if depth > 40 {
		return c.errorf("link %q: too many levels of links: %w", name, ErrEscapingSymlink)
	}
	target := r.link
	if strings.HasPrefix(target, "/") || strings.Contains(target, `\`) {
		return c.errorf("link %q -> %q: absolute target: %w", name, target, ErrEscapingSymlink)
	}
	joined := target
	if !r.hard {
		joined = path.Join(path.Dir(name), target)
	}
	joined = path.Clean(joined)
	if joined == ".." || strings.HasPrefix(joined, "../") {
		return c.errorf("link %q -> %q: %w", name, target, ErrEscapingSymlink)
	}
	if t, ok := c.files[joined]; ok {
		if err := c.resolve(joined, depth+1); err != nil {
			return err
		}
		*r = raw{data: t.data}
		return nil
	}
	// A link to a directory: alias every file under it.
	prefix := joined + "/"
	if joined == "." {
		return c.errorf("link %q -> %q: link to the bundle root: %w", name, target, ErrEscapingSymlink)
	}
	var under []string
	for n := range c.files {
		if strings.HasPrefix(n, prefix) {
			under = append(under, n)
		}
	}
	if len(under) == 0 {
		return c.errorf("link %q -> %q: target not in the bundle: %w", name, target, ErrEscapingSymlink)
	}
	delete(c.files, name)
	c.count--
	slices.Sort(under)
	for _, n := range under {
		if err := c.resolve(n, depth+1); err != nil {
			return err
		}
		alias := name + "/" + strings.TrimPrefix(n, prefix)
		if _, dup := c.files[alias]; dup {
			return c.errorf("duplicate entry %q: %w", alias, ErrFormat)
		}
		if c.count+1 > c.maxFiles {
			return c.errorf("more than %d files (MaxFiles) at %q: %w", c.maxFiles, alias, ErrTooLarge)
		}
		c.count++
		c.files[alias] = &raw{data: c.files[n].data}
	}
	return nil
}
