package control

import (
	"bytes"
	"fmt"
	"os"
)

// WelcomeFileName is the name under which N passes the welcome file to N+1
// among the files the new process inherits.
const WelcomeFileName = "handoff.welcome"

// WriteWelcome replaces what f holds with m, a TypeWelcome whose Welcome is
// the attempt's id; PID is set to this process's pid, which N+1 checks
// against its parent's.
func WriteWelcome(f *os.File, m Message) error {
	m.PID = getpid()
	b, err := Marshal(m)
	if err != nil {
		return err
	}
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("control: welcome file: %w", err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		return fmt.Errorf("control: welcome file: %w", err)
	}
	return nil
}

// ClearWelcome empties f: N clears the welcome of an attempt that ended
// without a commit, so that no later process reads it.
func ClearWelcome(f *os.File) error { return f.Truncate(0) }

// ReadWelcome reads the welcome in f, written by WriteWelcome in this
// process's parent, and empties f: a welcome is read once. It reports
// false, without error, when f holds none, or one its parent did not write
// for this process (an attempt's leftover).
func ReadWelcome(f *os.File) (Message, bool, error) {
	st, err := f.Stat()
	if err != nil {
		return Message{}, false, fmt.Errorf("control: welcome file: %w", err)
	}
	size := st.Size()
	if size == 0 {
		return Message{}, false, nil
	}
	if size > MaxMessageSize+1 {
		return Message{}, false, fmt.Errorf("control: welcome file of %d bytes exceeds %d", size, MaxMessageSize)
	}
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil {
		return Message{}, false, fmt.Errorf("control: welcome file: %w", err)
	}
	_ = f.Truncate(0)
	m, err := Unmarshal(bytes.TrimSuffix(b, []byte{'\n'}))
	if err != nil {
		return Message{}, false, err
	}
	if m.Type != TypeWelcome || m.Welcome == 0 || m.PID != getppid() {
		return Message{}, false, nil
	}
	return m, true, nil
}
