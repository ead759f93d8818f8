package bundle

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// checkManifest verifies a sha256sum-format manifest ("<hex>  <name>" per
// line, "*" before the name allowed): every file it lists must exist with
// that hash, and every file of the bundle but the manifest must be listed.
func checkManifest(b *Bundle, name string) error {
	m := b.files[name]
	if m == nil {
		return fmt.Errorf("manifest %q not in the bundle: %w", name, ErrManifest)
	}
	listed := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(m.data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		sum, fname, ok := strings.Cut(text, " ")
		fname = strings.TrimPrefix(strings.TrimLeft(fname, " "), "*")
		fname = strings.TrimPrefix(fname, "./")
		want, err := hex.DecodeString(sum)
		if !ok || err != nil || len(want) != sha256.Size || fname == "" {
			return fmt.Errorf("manifest %q line %d: want \"<sha256 hex>  <name>\": %w", name, line, ErrManifest)
		}
		f := b.files[fname]
		if f == nil {
			return fmt.Errorf("manifest %q lists %q, which is not in the bundle: %w", name, fname, ErrManifest)
		}
		if !bytes.Equal(want, f.sum[:]) {
			return fmt.Errorf("manifest %q: %q has SHA-256 %x, manifest says %s: %w", name, fname, f.sum, sum, ErrManifest)
		}
		listed[fname] = true
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("manifest %q: %v: %w", name, err, ErrManifest)
	}
	for _, n := range b.Names() {
		if n != name && !listed[n] {
			return fmt.Errorf("manifest %q does not list %q: %w", name, n, ErrManifest)
		}
	}
	return nil
}
