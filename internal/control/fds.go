package control

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/handoff-go/handoff/internal/fdpass"
)

// The fd channel is the second channel between two generations: a unix
// socket of type "unixpacket" on which N hands established connections to
// N+1 (package fdpass: one message is a listener's key and up to
// fdpass.MaxFDs sockets). N listens on FDAddr of its pid when it starts
// an upgrade; N+1 dials it during the hand-shake when both said HandOver
// in hello and welcome. Peer credentials are checked as on the control
// channel. It is separate from the JSON lines because SCM_RIGHTS needs
// message boundaries, which a stream does not keep.

// FDListener accepts the new generation's fd channel.
type FDListener struct {
	ln   *net.UnixListener
	once sync.Once
}

// ListenFDs listens on the fd-channel address of this process. It returns
// an error wrapping ErrNotSupported where there is no such channel.
func ListenFDs() (*FDListener, error) {
	addr := FDAddr(getpid())
	ln, err := listenFDs(addr)
	if err != nil {
		return nil, fmt.Errorf("control: listen on %s: %w", addr, err)
	}
	return &FDListener{ln: ln}, nil
}

// Accept waits for the fd channel of a child of this process until
// deadline. Connections from other processes are refused and closed.
func (l *FDListener) Accept(deadline time.Time) (*fdpass.Conn, error) {
	if err := l.ln.SetDeadline(deadline); err != nil {
		return nil, err
	}
	for {
		c, err := l.ln.AcceptUnix()
		if err != nil {
			return nil, fmt.Errorf("control: accept the fd channel: %w", err)
		}
		if _, err := checkChild(c); err != nil {
			c.Close()
			continue // not our child
		}
		return fdpass.New(c), nil
	}
}

// Close stops listening. It is idempotent.
func (l *FDListener) Close() error {
	var err error
	l.once.Do(func() { err = l.ln.Close() })
	return err
}

// DialFDs connects to the fd channel of this process's parent and checks
// that the listener is the parent.
func DialFDs(timeout time.Duration) (*fdpass.Conn, error) {
	ppid := getppid()
	addr := FDAddr(ppid)
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("unixpacket", addr)
	if err != nil {
		return nil, fmt.Errorf("control: dial the fd channel of parent %d at %s: %w", ppid, addr, err)
	}
	uc := c.(*net.UnixConn)
	if err := checkParent(uc, ppid); err != nil {
		c.Close()
		return nil, err
	}
	return fdpass.New(uc), nil
}
