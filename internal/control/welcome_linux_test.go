//go:build linux

package control

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func welcomeFile(t *testing.T) *os.File {
	t.Helper()
	f, err := NewWelcomeFile()
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

func size(t *testing.T, f *os.File) int64 {
	t.Helper()
	st, err := f.Stat()
	require.NoError(t, err)
	return st.Size()
}

// TestWelcomeFile: a welcome the parent wrote is read once; one written
// by any other process (an attempt's leftover, or this process's own) is
// ignored; an empty file holds none; garbage is an error. Every read
// empties the file.
func TestWelcomeFile(t *testing.T) {
	t.Run("from the parent", func(t *testing.T) {
		f := welcomeFile(t)
		b, err := Marshal(Message{Type: TypeWelcome, Welcome: 7, PID: os.Getppid(), Generation: 3, State: []byte("state")})
		require.NoError(t, err)
		_, err = f.WriteAt(b, 0)
		require.NoError(t, err)
		m, ok, err := ReadWelcome(f)
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, uint64(7), m.Welcome)
		assert.Equal(t, 3, m.Generation)
		assert.Equal(t, []byte("state"), m.State)
		assert.Zero(t, size(t, f), "read once")
		_, ok, err = ReadWelcome(f)
		assert.NoError(t, err)
		assert.False(t, ok, "a second read")
	})
	t.Run("not from the parent", func(t *testing.T) {
		f := welcomeFile(t)
		require.NoError(t, WriteWelcome(f, Message{Type: TypeWelcome, Welcome: 1, State: make([]byte, 4096)}))
		require.NoError(t, WriteWelcome(f, Message{Type: TypeWelcome, Welcome: 2}))
		b, err := Marshal(Message{Type: TypeWelcome, Welcome: 2, PID: os.Getpid()})
		require.NoError(t, err)
		assert.Equal(t, int64(len(b)), size(t, f), "the second write replaced the first")
		_, ok, err := ReadWelcome(f)
		assert.NoError(t, err)
		assert.False(t, ok, "written by this process, not its parent")
		assert.Zero(t, size(t, f))
	})
	t.Run("cleared", func(t *testing.T) {
		f := welcomeFile(t)
		require.NoError(t, WriteWelcome(f, Message{Type: TypeWelcome, Welcome: 1}))
		require.NoError(t, ClearWelcome(f))
		_, ok, err := ReadWelcome(f)
		assert.NoError(t, err)
		assert.False(t, ok)
	})
	t.Run("garbage", func(t *testing.T) {
		f := welcomeFile(t)
		_, err := f.WriteAt([]byte("not json\n"), 0)
		require.NoError(t, err)
		_, ok, err := ReadWelcome(f)
		assert.ErrorContains(t, err, "control: decode message")
		assert.False(t, ok)
		assert.Zero(t, size(t, f))
	})
}
