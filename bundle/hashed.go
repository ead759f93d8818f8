package bundle

import (
	"path"
	"strings"
)

// HashedName reports whether a file name looks content-hashed by a bundler
// (Vite "index-BHr7Ra_x.js", webpack "main.3f2a9c1b.js", esbuild
// "chunk-ABCD1234.js"): after a '.', '-' or '_' in the base name, before
// the extension, a token of 8 to 64 characters from [A-Za-z0-9_-] with at
// least one digit, one letter and no run of 5 lower-case letters (which
// would be a word). Precompression (.gz, .br) and .map suffixes are looked
// through. It errs towards "no": a false "no" costs a revalidation, a false
// "yes" a stale year-long cache.
func HashedName(name string) bool {
	base := path.Base(name)
	for _, s := range []string{".gz", ".br", ".map"} {
		base = strings.TrimSuffix(base, s)
	}
	stem := strings.TrimSuffix(base, path.Ext(base))
	for i := 1; i < len(stem)-1; i++ {
		if c := stem[i]; (c == '.' || c == '-' || c == '_') && hashLike(stem[i+1:]) {
			return true
		}
	}
	return false
}

func hashLike(s string) bool {
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	digit, letter, run := false, false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			digit, run = true, 0
		case 'a' <= c && c <= 'z':
			letter = true
			if run++; run >= 5 {
				return false
			}
		case 'A' <= c && c <= 'Z':
			letter, run = true, 0
		case c == '_' || c == '-':
			run = 0
		default:
			return false
		}
	}
	return digit && letter
}
