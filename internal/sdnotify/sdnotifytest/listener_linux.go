//go:build linux

package sdnotifytest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Message is one datagram received.
type Message struct {
	// PID and UID of the sender, from SCM_CREDENTIALS (0 if absent).
	PID, UID int
	// Text is the datagram; Lines its assignments.
	Text  string
	Lines []string
	// FDs is how many file descriptors came with it (already closed
	// unless Listener.HoldFDs).
	FDs  int
	Time time.Time
}

// Has reports whether the message carries the assignment a (such as
// "READY=1"), or, for a prefix ending in "=" (such as "STATUS="), an
// assignment with that key.
func (m Message) Has(a string) bool {
	for _, l := range m.Lines {
		if l == a || strings.HasSuffix(a, "=") && strings.HasPrefix(l, a) {
			return true
		}
	}
	return false
}

// Value returns the value of key (without "=") in the message.
func (m Message) Value(key string) (string, bool) {
	for _, l := range m.Lines {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			return v, true
		}
	}
	return "", false
}

func (m Message) String() string {
	return fmt.Sprintf("pid %d: %q", m.PID, m.Text)
}

// Listener is a NOTIFY_SOCKET receiver. Methods are safe for concurrent use.
type Listener struct {
	// Path is the socket's path, the value for NOTIFY_SOCKET.
	Path string

	conn *net.UnixConn
	done chan struct{}

	mu    sync.Mutex
	cond  *sync.Cond
	msgs  []Message
	held  []int
	hold  bool
	err   error
	ended bool
}

// New listens on a socket in tb.TempDir() (or a shorter temporary
// directory when that path is too long for a socket), sets NOTIFY_SOCKET
// to it with tb.Setenv, and closes it at the end of the test.
func New(tb testing.TB) *Listener {
	tb.Helper()
	dir := tb.TempDir()
	if len(dir) > 80 {
		var err error
		if dir, err = os.MkdirTemp("", "sdn"); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(dir) })
	}
	l, err := Listen(filepath.Join(dir, "notify"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	tb.Setenv("NOTIFY_SOCKET", l.Path)
	return l
}

// Listen listens on a unixgram socket at path, with SO_PASSCRED on.
func Listen(path string) (*Listener, error) {
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	raw, err := c.SyscallConn()
	if err == nil {
		cerr := raw.Control(func(fd uintptr) {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
		})
		if cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("SO_PASSCRED: %w", err)
	}
	l := &Listener{Path: path, conn: c, done: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	go l.read()
	return l, nil
}

// HoldFDs makes the listener keep received file descriptors open (until
// ReleaseFDs or Close), to play a manager that is slow to answer a barrier.
func (l *Listener) HoldFDs(hold bool) {
	l.mu.Lock()
	l.hold = hold
	l.mu.Unlock()
}

// ReleaseFDs closes the file descriptors held so far.
func (l *Listener) ReleaseFDs() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, fd := range l.held {
		unix.Close(fd)
	}
	l.held = nil
}

func (l *Listener) read() {
	defer close(l.done)
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(4*16))
	for {
		n, oobn, _, _, err := l.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			l.mu.Lock()
			if !errors.Is(err, net.ErrClosed) {
				l.err = err
			}
			l.ended = true
			l.cond.Broadcast()
			l.mu.Unlock()
			return
		}
		m := Message{Text: string(buf[:n]), Time: time.Now()}
		m.Lines = strings.FieldsFunc(m.Text, func(r rune) bool { return r == '\n' })
		var fds []int
		if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for _, cm := range cms {
				if cred, err := unix.ParseUnixCredentials(&cm); err == nil {
					m.PID, m.UID = int(cred.Pid), int(cred.Uid)
					continue
				}
				if rights, err := unix.ParseUnixRights(&cm); err == nil {
					fds = append(fds, rights...)
				}
			}
		}
		m.FDs = len(fds)
		l.mu.Lock()
		if l.hold {
			l.held = append(l.held, fds...)
		} else {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
		l.msgs = append(l.msgs, m)
		l.cond.Broadcast()
		l.mu.Unlock()
	}
}

// Messages returns every message received so far, oldest first.
func (l *Listener) Messages() []Message {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Message(nil), l.msgs...)
}

// Since returns the messages received after the first i.
func (l *Listener) Since(i int) []Message {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i > len(l.msgs) {
		i = len(l.msgs)
	}
	return append([]Message(nil), l.msgs[i:]...)
}

// Len is the number of messages received so far.
func (l *Listener) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.msgs)
}

// Wait waits until done returns true for the messages received after the
// first from, or until timeout, and returns those messages and whether done
// returned true.
func (l *Listener) Wait(from int, timeout time.Duration, done func([]Message) bool) ([]Message, bool) {
	deadline := time.Now().Add(timeout)
	wake := time.AfterFunc(timeout, func() {
		l.mu.Lock()
		l.cond.Broadcast()
		l.mu.Unlock()
	})
	defer wake.Stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		var ms []Message
		if from < len(l.msgs) {
			ms = append(ms, l.msgs[from:]...)
		}
		if done(ms) {
			return ms, true
		}
		if l.ended || !time.Now().Before(deadline) {
			return ms, false
		}
		l.cond.Wait()
	}
}

// WaitFor waits, bounded by timeout, for a message received after the first
// from that has the assignment a (see Message.Has), and returns it.
func (l *Listener) WaitFor(from int, timeout time.Duration, a string) (Message, bool) {
	var found Message
	_, ok := l.Wait(from, timeout, func(ms []Message) bool {
		for _, m := range ms {
			if m.Has(a) {
				found = m
				return true
			}
		}
		return false
	})
	return found, ok
}

// Close stops the listener, waits for its reader, closes held file
// descriptors and removes the socket file. Idempotent. It returns the
// first read error, if any.
func (l *Listener) Close() error {
	l.conn.Close()
	<-l.done
	l.ReleaseFDs()
	_ = os.Remove(l.Path)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
