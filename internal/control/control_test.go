package control

import (
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return newConn(a, 0), newConn(b, 0)
}

func TestRoundTrip(t *testing.T) {
	a, b := pair(t)
	want := Message{Type: TypeWelcome, Generation: 7, Probation: time.Second, State: []byte{0, 1, 2, '\n', 255}}
	go a.Send(want)
	got, err := b.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if got.V != Version || got.Type != want.Type || got.Generation != 7 || got.Probation != time.Second || string(got.State) != string(want.State) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestVersionMismatch(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go a.Write([]byte(`{"v":99,"type":"hello"}` + "\n"))
	_, err := newConn(b, 0).Receive()
	if !errors.Is(err, ErrVersion) {
		t.Errorf("err = %v, want ErrVersion", err)
	}
}

func TestGarbage(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go a.Write([]byte("not json\n"))
	if _, err := newConn(b, 0).Receive(); err == nil || !strings.Contains(err.Error(), "decode") {
		t.Errorf("err = %v, want a decode error", err)
	}
}

func TestAddrIsPerPID(t *testing.T) {
	if Addr(1) == Addr(2) {
		t.Error("two pids share a control address")
	}
}

// A process can listen on its own control address, and a connection from a
// process that is not its child is refused by the credential check.
func TestAcceptRefusesNonChild(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("peer credentials are checked on Linux only")
	}
	ln, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", Addr(getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := ln.Accept(time.Now().Add(200 * time.Millisecond)); err == nil {
		t.Error("accepted a connection from a process that is not a child")
	}
}

// The fields of the hand-over travel in hello, welcome and
// probation-passed; a message of a peer that does not know them decodes
// with the feature off.
func TestHandOverFields(t *testing.T) {
	a, b := pair(t)
	go a.Send(Message{Type: TypeHello, PID: 3, HandOver: true})
	got, err := b.Receive()
	if err != nil || !got.HandOver {
		t.Fatalf("hello: %+v, %v", got, err)
	}
	go a.Send(Message{Type: TypeProbationPassed, Listeners: []string{"tcp 127.0.0.1:80", "unix /run/x.sock"}})
	got, err = b.Receive()
	if err != nil || len(got.Listeners) != 2 || got.Listeners[1] != "unix /run/x.sock" {
		t.Fatalf("probation-passed: %+v, %v", got, err)
	}
	c, d := net.Pipe()
	defer c.Close()
	defer d.Close()
	go c.Write([]byte(`{"v":2,"type":"welcome","gen":2}` + "\n"))
	got, err = newConn(d, 0).Receive()
	if err != nil || got.HandOver || got.Listeners != nil {
		t.Fatalf("old welcome: %+v, %v", got, err)
	}
}

func TestListenerKey(t *testing.T) {
	if k := ListenerKey(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80}); k != "tcp 127.0.0.1:80" {
		t.Errorf("key %q", k)
	}
	if FDAddr(1) == Addr(1) || FDAddr(1) == FDAddr(2) {
		t.Error("fd-channel addresses collide")
	}
}

// The fd channel refuses a process that is not a child, as the control
// channel does.
func TestAcceptFDsRefusesNonChild(t *testing.T) {
	if !HandOverSupported {
		t.Skip("no fd channel on this platform")
	}
	ln, err := ListenFDs()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unixpacket", FDAddr(getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := ln.Accept(time.Now().Add(200 * time.Millisecond)); err == nil {
		t.Error("accepted an fd channel from a process that is not a child")
	}
}
