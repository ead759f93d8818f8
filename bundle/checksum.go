package bundle

import (
	"fmt"
	"os"
	"strings"
)

// SidecarChecksum is an Options.Checksum that reads the expected SHA-256
// from source + ".sha256" (the first word, as sha256sum writes it). Write
// the sidecar before renaming the bundle into place.
func SidecarChecksum(source string) (string, error) {
	b, err := os.ReadFile(source + ".sha256")
	if err != nil {
		return "", err
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return "", fmt.Errorf("%s.sha256 is empty", source)
	}
	return fields[0], nil
}

// checkSum compares got, the hex SHA-256 of the bundle at source (of the
// archive file, or the bundle ID for a directory), with what checksum
// expects.
func checkSum(checksum func(string) (string, error), source, got string) error {
	want, err := checksum(source)
	if err != nil {
		return fmt.Errorf("checksum: %w: %w", err, ErrChecksum)
	}
	if want = strings.ToLower(strings.TrimSpace(want)); want != got {
		return fmt.Errorf("expected SHA-256 %s, got %s: %w", want, got, ErrChecksum)
	}
	return nil
}
