package plugin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// stageHooks are test seams for staging.
type stageHooks struct {
	// afterCopy runs between copying the source and checking it did not
	// change meanwhile.
	afterCopy func(src string)
	// afterStage runs once the staged file is in place, before it starts.
	afterStage func(src, staged string)
}

// stage copies the binary at src into dir under its own sha256 (hex), so the
// file that is verified and executed is one nobody else writes to: a new
// binary appearing at src later cannot change what runs, and a binary that
// is replaced while it is copied is refused rather than half-copied.
//
// The checks: src is a regular file; the bytes copied are hashed as they are
// copied; src must be the same file, with the same size and modification
// time, after the copy as before; the hash must be in allowed when allowed is
// not empty. The staged file is fsynced, made read-only and renamed into
// place, so a staged path never holds a partial file.
func stage(src, dir string, allowed [][]byte, hooks stageHooks) (string, [sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(src)
	if err != nil {
		return "", sum, err
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return "", sum, err
	}
	if !before.Mode().IsRegular() {
		return "", sum, fmt.Errorf("%s is not a regular file", src)
	}
	tmp, err := os.CreateTemp(dir, ".staging-*")
	if err != nil {
		return "", sum, err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	defer tmp.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), f)
	if err != nil {
		return "", sum, err
	}
	if hooks.afterCopy != nil {
		hooks.afterCopy(src)
	}
	after, err := os.Stat(src)
	if err != nil || !os.SameFile(before, after) || after.Size() != before.Size() ||
		!after.ModTime().Equal(before.ModTime()) || n != before.Size() {
		return "", sum, fmt.Errorf("%w: %s", ErrChanged, src)
	}
	h.Sum(sum[:0])
	if len(allowed) > 0 && !allowedSum(allowed, sum[:]) {
		return "", sum, fmt.Errorf("%w: sha256 %x of %s", ErrChecksum, sum, src)
	}
	if err := tmp.Chmod(0o555); err != nil {
		return "", sum, err
	}
	if err := tmp.Sync(); err != nil {
		return "", sum, err
	}
	if err := tmp.Close(); err != nil {
		return "", sum, err
	}
	dst := filepath.Join(dir, hex.EncodeToString(sum[:]))
	if err := os.Rename(tmp.Name(), dst); err != nil {
		// Windows does not replace a file a process runs from: a binary
		// staged again while its version runs is there already, intact.
		if have, herr := hashFile(dst); herr != nil || have != sum {
			return "", sum, err
		}
	}
	return dst, sum, nil
}

func allowedSum(allowed [][]byte, sum []byte) bool {
	for _, a := range allowed {
		if subtle.ConstantTimeCompare(a, sum) == 1 {
			return true
		}
	}
	return false
}
