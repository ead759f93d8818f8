package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Version is the protocol version spoken by this package. Version 2 added
// the accept step (the new generation accepts only once the old one said
// so), stopping, and upgrade requests forwarded to a committed successor.
// Fields added since (the hand-over of connections, accepting on healthy)
// are optional: a peer that does not know them leaves them out and ignores
// them, and the feature is off.
const Version = 2

// MaxMessageSize bounds one encoded message (state blob included).
const MaxMessageSize = 64 << 20

// Message types, in the order an upgrade uses them. N is the old
// generation (it listens), N+1 the new one (it dials).
const (
	// TypeHello is N+1's first message: its pid, HandOver if it can adopt
	// connections, and AcceptOnHealthy if it can accept as soon as it
	// sends TypeHealthy.
	TypeHello = "hello"
	// TypeWelcome is N's message: N+1's generation number, the probation
	// to hold, the health-check interval and the state blob; HandOver if
	// N hands connections over on the fd channel, and AcceptOnHealthy if
	// N lets N+1 accept on TypeHealthy. Either feature is on only when
	// both sides said so.
	//
	// Where it can (WelcomeFileSupported), N writes the welcome into the
	// welcome file it passes to N+1 at exec, with Welcome set to the
	// attempt's id and PID to its own pid: N+1 reads it at once, says so
	// in its hello (Welcome, the same id), and waits for nothing from N.
	// Otherwise, or for a N+1 whose hello carries no Welcome, N sends the
	// welcome on the channel in answer to the hello.
	TypeWelcome = "welcome"
	// TypeHealthy says N+1 passed its first health check. With
	// AcceptOnHealthy on, N+1 accepts connections from the moment it
	// sends it; otherwise it waits for TypeAccept.
	TypeHealthy = "healthy"
	// TypeAccept is N's answer to TypeHealthy: N has stopped accepting,
	// and N+1 may accept connections (it does already with
	// AcceptOnHealthy).
	TypeAccept = "accept"
	// TypeUnhealthy says a health check of N+1 failed (Reason says how).
	TypeUnhealthy = "unhealthy"
	// TypeProbationPassed says N+1 held its probation, healthy.
	// Listeners names (ListenerKey) the listeners into which N+1 adopts
	// connections handed over on the fd channel.
	TypeProbationPassed = "probation-passed"
	// TypeCommit tells N+1 that it is now in charge. It is one-way: N
	// sends nothing after it but TypeUpgrade.
	TypeCommit = "commit"
	// TypeRollback tells N+1 to stop accepting, drain and exit. With
	// AcceptOnHealthy on, N+1 answers TypeRolledBack.
	TypeRollback = "rollback"
	// TypeRolledBack is N+1's answer to TypeRollback, once it has stopped
	// accepting: a N+1 that did not send TypeHealthy before it holds no
	// connection, so N may end it at once; one that did drains first.
	TypeRolledBack = "rolled-back"
	// TypeStopping says N+1 was stopped (Reason says why): before the
	// commit it is a rollback; after it, N+1's end is not a failure.
	TypeStopping = "stopping"
	// TypeUpgrade asks a committed N+1 to upgrade in turn (a request N
	// received after it handed over), once N has exited.
	TypeUpgrade = "upgrade"
)

// ErrNotSupported is returned where a channel does not exist on this
// platform: the control channel where there are no upgrades (Windows), the
// fd channel where unix sockets of type SOCK_SEQPACKET are missing.
var ErrNotSupported = errors.New("control: not supported on this platform")

// ErrVersion is returned when the peer speaks another protocol version.
var ErrVersion = errors.New("control: protocol version mismatch")

// Message is one control message. Fields not used by a type are empty.
type Message struct {
	V    int    `json:"v"`
	Type string `json:"type"`

	PID        int           `json:"pid,omitempty"`
	Generation int           `json:"gen,omitempty"`
	Probation  time.Duration `json:"probation,omitempty"`
	Interval   time.Duration `json:"interval,omitempty"`
	State      []byte        `json:"state,omitempty"`
	Reason     string        `json:"reason,omitempty"`

	// HandOver, in hello and welcome, says that the sender takes part in
	// the hand-over of connections on the fd channel (see DialFDs).
	HandOver bool `json:"handover,omitempty"`
	// AcceptOnHealthy, in hello and welcome, says that the sender speaks
	// the accept-on-healthy step: N+1 accepts from TypeHealthy on and
	// answers TypeRollback with TypeRolledBack.
	AcceptOnHealthy bool `json:"accept_on_healthy,omitempty"`
	// Listeners, in probation-passed, are the keys (ListenerKey) of the
	// listeners that adopt connections handed over.
	Listeners []string `json:"listeners,omitempty"`
	// Welcome, in a welcome read from the welcome file, is the id of the
	// upgrade attempt it was written for; in a hello, the id of the
	// welcome N+1 read from the file, which N then does not send again.
	Welcome uint64 `json:"welcome,omitempty"`
}

// Marshal encodes m as one line of the channel, setting its version.
func Marshal(m Message) ([]byte, error) {
	m.V = Version
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("control: encode %s: %w", m.Type, err)
	}
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("control: %s message of %d bytes exceeds %d", m.Type, len(b), MaxMessageSize)
	}
	return append(b, '\n'), nil
}

// Unmarshal decodes one message encoded by Marshal (its line end
// optional) and checks its version.
func Unmarshal(line []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(line, &m); err != nil {
		return Message{}, fmt.Errorf("control: decode message: %w", err)
	}
	if m.V != Version {
		return Message{}, fmt.Errorf("%w: peer speaks %d, we speak %d", ErrVersion, m.V, Version)
	}
	return m, nil
}

// ListenerKey names a listener on both sides of the fd channel: both
// generations hold the same listening sockets, so the same address.
func ListenerKey(a net.Addr) string { return a.Network() + " " + a.String() }

// Conn is one end of a control channel. Send is goroutine-safe; Receive must
// be called from one goroutine at a time.
type Conn struct {
	c    net.Conn
	r    *bufio.Reader
	mu   sync.Mutex
	once sync.Once
	// PeerPID is the pid of the process at the other end, from the socket's
	// credentials where the OS reports them, else 0.
	PeerPID int
}

func newConn(c net.Conn, peer int) *Conn {
	return &Conn{c: c, r: bufio.NewReaderSize(c, 64<<10), PeerPID: peer}
}

// Send writes m, setting its version.
func (c *Conn) Send(m Message) error {
	b, err := Marshal(m)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.c.Write(b); err != nil {
		return fmt.Errorf("control: send %s: %w", m.Type, err)
	}
	return nil
}

// Receive reads the next message. It returns io.EOF (possibly wrapped) when
// the peer closed the channel or exited.
func (c *Conn) Receive() (Message, error) {
	var line []byte
	for {
		chunk, isPrefix, err := c.r.ReadLine()
		if err != nil {
			return Message{}, err
		}
		line = append(line, chunk...)
		if len(line) > MaxMessageSize {
			return Message{}, fmt.Errorf("control: message exceeds %d bytes", MaxMessageSize)
		}
		if !isPrefix {
			break
		}
	}
	return Unmarshal(line)
}

// SetDeadline bounds the next Send and Receive calls.
func (c *Conn) SetDeadline(t time.Time) error { return c.c.SetDeadline(t) }

// Close closes the channel. It is idempotent.
func (c *Conn) Close() error {
	var err error
	c.once.Do(func() { err = c.c.Close() })
	return err
}

// Listener accepts the new generation's control connection.
type Listener struct {
	ln   *net.UnixListener
	once sync.Once
}

// Listen starts listening on the control address of this process.
func Listen() (*Listener, error) {
	addr := Addr(getpid())
	ln, err := listenUnix(addr)
	if err != nil {
		return nil, fmt.Errorf("control: listen on %s: %w", addr, err)
	}
	return &Listener{ln: ln}, nil
}

// Accept waits for a control connection from a child of this process until
// deadline. Connections from other processes are refused and closed.
func (l *Listener) Accept(deadline time.Time) (*Conn, error) {
	if err := l.ln.SetDeadline(deadline); err != nil {
		return nil, err
	}
	for {
		c, err := l.ln.AcceptUnix()
		if err != nil {
			return nil, fmt.Errorf("control: accept: %w", err)
		}
		pid, err := checkChild(c)
		if err != nil {
			c.Close()
			continue // not our child: ignore it and wait for the real one
		}
		return newConn(c, pid), nil
	}
}

// Close stops listening. It is idempotent.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() { err = l.ln.Close() })
	return err
}

// Dial connects to the control address of this process's parent and checks
// that the listener is the parent.
func Dial(timeout time.Duration) (*Conn, error) {
	ppid := getppid()
	addr := Addr(ppid)
	d := net.Dialer{Timeout: timeout}
	c, err := d.Dial("unix", addr)
	if err != nil {
		return nil, fmt.Errorf("control: dial parent %d at %s: %w", ppid, addr, err)
	}
	uc := c.(*net.UnixConn)
	if err := checkParent(uc, ppid); err != nil {
		c.Close()
		return nil, err
	}
	return newConn(uc, ppid), nil
}
