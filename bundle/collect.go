package bundle

import (
	"fmt"
	"io"
)

// raw is a file as read from the source, before hashing.
type raw struct {
	data []byte
	link string // symlink target (archives), resolved before hashing
	hard bool   // link is an archive-root-relative hard link
}

// collector gathers files while enforcing the limits.
type collector struct {
	prefix    string // of every error message
	maxFiles  int
	maxBytes  int64
	hardLinks bool // Options.AllowHardLinks
	files     map[string]*raw
	count     int
	bytes     int64
}

func (c *collector) errorf(format string, args ...any) error {
	return fmt.Errorf(c.prefix+format, args...)
}

// reserve checks, before reading, that one more file of size n fits.
func (c *collector) reserve(name string, n int64) error {
	if c.count+1 > c.maxFiles {
		return c.errorf("more than %d files (MaxFiles) at %q: %w", c.maxFiles, name, ErrTooLarge)
	}
	if n < 0 || n > c.maxBytes-c.bytes {
		return c.errorf("%q: more than %d bytes in all (MaxBytes): %w", name, c.maxBytes, ErrTooLarge)
	}
	return nil
}

// read reads exactly the declared size n from r and checks that r ends there
// (which also makes archive readers verify their checksums).
func (c *collector) read(name string, r io.Reader, n int64) ([]byte, error) {
	if err := c.reserve(name, n); err != nil {
		return nil, err
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, c.errorf("%q: truncated or corrupt: %v: %w", name, err, ErrFormat)
	}
	var one [1]byte
	switch k, err := r.Read(one[:]); {
	case k > 0:
		return nil, c.errorf("%q: larger than its declared %d bytes: %w", name, n, ErrTooLarge)
	case err != nil && err != io.EOF:
		return nil, c.errorf("%q: corrupt, or data past its declared %d bytes: %v: %w", name, n, err, ErrFormat)
	}
	return data, nil
}

func (c *collector) add(name string, r *raw) error {
	if _, dup := c.files[name]; dup {
		return c.errorf("duplicate entry %q: %w", name, ErrFormat)
	}
	if r.link == "" {
		if err := c.reserve(name, int64(len(r.data))); err != nil {
			return err
		}
		c.bytes += int64(len(r.data))
	} else if c.count+1 > c.maxFiles {
		return c.errorf("more than %d files (MaxFiles) at %q: %w", c.maxFiles, name, ErrTooLarge)
	}
	c.count++
	c.files[name] = r
	return nil
}
