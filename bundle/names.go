package bundle

import (
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// cleanName validates an archive entry name and returns it clean, relative,
// slash-separated; "" for the root directory.
func cleanName(rawName string) (string, error) {
	switch {
	case rawName == "":
		return "", fmt.Errorf("empty entry name: %w", ErrUnsafePath)
	case strings.ContainsRune(rawName, 0):
		return "", fmt.Errorf("entry %q: NUL in name: %w", rawName, ErrUnsafePath)
	case strings.Contains(rawName, `\`):
		return "", fmt.Errorf("entry %q: backslash in name (zip-slip on Windows): %w", rawName, ErrUnsafePath)
	case strings.HasPrefix(rawName, "/"),
		len(rawName) >= 2 && rawName[1] == ':' && ('a' <= rawName[0]|0x20 && rawName[0]|0x20 <= 'z'):
		return "", fmt.Errorf("entry %q: absolute path: %w", rawName, ErrUnsafePath)
	}
	for _, elem := range strings.Split(rawName, "/") {
		if elem == ".." {
			return "", fmt.Errorf("entry %q: path traversal (..): %w", rawName, ErrUnsafePath)
		}
	}
	name := path.Clean(rawName)
	if name == "." {
		return "", nil
	}
	if !fs.ValidPath(name) {
		return "", fmt.Errorf("entry %q: invalid name: %w", rawName, ErrUnsafePath)
	}
	return name, nil
}
