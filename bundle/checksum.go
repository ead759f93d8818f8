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
