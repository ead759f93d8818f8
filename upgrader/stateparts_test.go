package upgrader

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStateParts: the blob on the wire is the program's, byte for byte,
// while no part is registered; with parts, the next generation reads the
// program's blob and each part back as they were saved.
func TestStateParts(t *testing.T) {
	save := func(b []byte) func() ([]byte, error) { return func() ([]byte, error) { return b, nil } }

	var p stateParts
	blob, err := p.wrap(save([]byte("mine")))()
	require.NoError(t, err)
	assert.Equal(t, []byte("mine"), blob, "no part: the program's blob as it is")
	own, parts := splitParts(blob)
	assert.Equal(t, []byte("mine"), own)
	assert.Empty(t, parts)

	u := &Upgrader{}
	u.SaveStatePart("metrics", save([]byte(`{"committed":5}`)))
	u.SaveStatePart("other", save(nil))
	for _, program := range [][]byte{[]byte("mine"), nil, []byte(partsMagic + "looks like an envelope")} {
		blob, err := u.parts.wrap(save(program))()
		require.NoError(t, err)
		own, parts := splitParts(blob)
		assert.Equal(t, program, own)
		assert.Equal(t, map[string][]byte{"metrics": []byte(`{"committed":5}`), "other": nil}, parts)
	}
	blob, err = u.parts.wrap(nil)()
	require.NoError(t, err)
	u.state, u.parts.inherited = splitParts(blob)
	assert.Nil(t, u.State())
	assert.Equal(t, []byte(`{"committed":5}`), u.StatePart("metrics"))
	assert.Nil(t, u.StatePart("absent"))

	// A program's blob that merely starts like an envelope, with no part
	// registered, comes back whole.
	var none stateParts
	odd := []byte(partsMagic + "\x05ab")
	blob, err = none.wrap(save(odd))()
	require.NoError(t, err)
	own, _ = splitParts(blob)
	assert.Equal(t, odd, own)
	own, parts = splitParts(odd)
	assert.Equal(t, odd, own, "a malformed envelope is the program's blob")
	assert.Nil(t, parts)

	// A failing part fails the save, naming the part.
	u.SaveStatePart("broken", func() ([]byte, error) { return nil, errors.New("no") })
	_, err = u.parts.wrap(nil)()
	assert.ErrorContains(t, err, `state part "broken": no`)
	u.SaveStatePart("broken", nil)
	_, err = u.parts.wrap(nil)()
	assert.NoError(t, err)
	assert.Panics(t, func() { u.SaveStatePart("", save(nil)) })
}
