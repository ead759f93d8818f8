//go:build linux

package k8stest

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestNormalizeRef(t *testing.T) {
	for in, want := range map[string]string{
		"hello":                   "docker.io/library/hello:latest",
		"hello:1":                 "docker.io/library/hello:1",
		"me/hello":                "docker.io/me/hello:latest",
		"handoff.local/x/hello:2": "handoff.local/x/hello:2",
		"localhost/hello":         "localhost/hello:latest",
		"localhost:5000/hello:3":  "localhost:5000/hello:3",
	} {
		assert.Equal(t, want, normalizeRef(in), in)
	}
}
