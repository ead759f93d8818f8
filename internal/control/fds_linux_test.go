//go:build linux

package control

import (
	"io"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/handoff-go/handoff/internal/fdpass"
)

// childEnv makes the test binary the child of TestFDChannelChild.
const childEnv = "HANDOFF_CONTROL_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(fdChild())
	}
	os.Exit(m.Run())
}

// fdChild dials its parent's fd channel, takes one socket and answers
// "child" on it.
func fdChild() int {
	fc, err := DialFDs(5 * time.Second)
	if err != nil {
		return 2
	}
	defer fc.Close()
	header, fds, err := fc.Receive()
	if err != nil || string(header) != "conn" || len(fds) != 1 {
		return 3
	}
	f := os.NewFile(uintptr(fds[0]), "conn")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return 4
	}
	defer c.Close()
	if _, err := c.Write([]byte("child")); err != nil {
		return 5
	}
	return 0
}

// A child of this process dials the fd channel (the credentials check
// passes) and serves the connection handed to it.
func TestFDChannelChild(t *testing.T) {
	ln, err := ListenFDs()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fc, err := ln.Accept(time.Now().Add(10 * time.Second))
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	defer fc.Close()

	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	client, err := net.Dial("tcp", tl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := tl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := fdpass.Dup(server.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	if err := fc.Send([]byte("conn"), []int{fd}); err != nil {
		t.Fatal(err)
	}
	fdpass.Close(fd)
	server.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(client)
	if err != nil || string(b) != "child" {
		t.Errorf("read %q, %v; want the child's answer, then EOF", b, err)
	}
}
