package flagsyaml_test

import (
	"testing"

	"github.com/handoff-go/handoff/flags/flagsyaml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestToJSON(t *testing.T) {
	out, err := flagsyaml.ToJSON([]byte("new-checkout:\n  percent: 10.5\n  allow: [qa-1, 42]\nbutton-color: green\nold: on\n"))
	require.NoError(t, err)
	assert.JSONEq(t, `{"new-checkout": {"percent": 10.5, "allow": ["qa-1", 42]}, "button-color": "green", "old": "on"}`, string(out))

	for in, want := range map[string]string{
		"":                      "empty",
		"a: [1\n":               "yaml:",
		"a: 1\na: 2\n":          "repeats",
		"? [a]\n: 1\n":          "must be a string",
		"x: &a {b: 1}\ny: *a\n": "aliases",
	} {
		_, err := flagsyaml.ToJSON([]byte(in))
		assert.ErrorContains(t, err, want, "%q", in)
	}
}
