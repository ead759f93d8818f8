package upgrader_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-go/handoff/signal"
	"github.com/handoff-go/handoff/upgrader"
)

// helperEnv selects the helper program below when this test binary is run by
// a test (and by the upgrades of that run, which inherit the environment).
const helperEnv = "HANDOFF_UPGRADER_TEST_HELPER"

// helperMain is a minimal server made of this test binary: it registers a
// file with File and a tcp6 listener, and prints what it inherited. Each
// generation appends a line to the file; the next one reads them all.
func helperMain() int {
	upg, err := upgrader.New(upgrader.Options{})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer upg.Close()
	f, err := upg.File("journal", func() (*os.File, error) {
		return os.CreateTemp("", "handoff-journal-")
	})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Fprintf(f, "generation %d pid %d\n", upg.Generation(), os.Getpid())
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		fmt.Println("error", err)
		return 1
	}
	journal, _ := io.ReadAll(f)
	ln, err := upg.Listen("tcp6", "[::1]:0")
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "pid %d\n", os.Getpid())
			c.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	go signal.Run(ctx, signal.Actions{
		Upgrade: upg.Upgrade,
		Stop:    func(context.Context, error) error { upg.Stop(); return nil },
	}, signal.Options{OnEvent: func(e signal.Event) {
		if e.Kind == signal.EventReady {
			close(ready)
		}
	}})
	<-ready
	if err := upg.Ready(ctx); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Printf("ready pid=%d addr=%s journal=%q\n", os.Getpid(), ln.Addr(), journal)
	<-upg.Exit()
	upg.Drain(ctx)
	return 0
}

// TestFileAndTCP6: a file registered with File and a tcp6 listener are
// handed to the next generation: the new one reads what the old one wrote
// and answers on the same [::1] address.
func TestFileAndTCP6(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	} else {
		ln.Close()
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	defer r.Close()
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("helper exited")
			}
			if strings.HasPrefix(l, "error") {
				t.Fatal(l)
			}
			return l
		case <-time.After(30 * time.Second):
			t.Fatal("no line from the helper within 30s")
		}
		return ""
	}
	field := func(line, key string) string {
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				return v
			}
		}
		return ""
	}

	first := next()
	addr := field(first, "addr")
	if !strings.HasPrefix(addr, "[::1]:") {
		t.Fatalf("first generation: %s", first)
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	second := next()
	if got := field(second, "addr"); got != addr {
		t.Errorf("second generation listens on %s, want %s", got, addr)
	}
	wantJournal := fmt.Sprintf("generation 1 pid %d\\ngeneration 2 pid %s\\n", cmd.Process.Pid, field(second, "pid"))
	if _, got, _ := strings.Cut(second, "journal="); got != `"`+wantJournal+`"` {
		t.Errorf("second generation read journal %s, want %q", got, wantJournal)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("first generation: %v", err)
	}
	c, err := net.DialTimeout("tcp6", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if want := "pid " + field(second, "pid") + "\n"; string(b) != want {
		t.Errorf("answer %q, want %q", b, want)
	}
	pid2 := 0
	fmt.Sscan(field(second, "pid"), &pid2)
	if err := syscall.Kill(pid2, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var ws syscall.WaitStatus
	done := make(chan struct{})
	go func() { syscall.Wait4(pid2, &ws, 0, nil); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("second generation did not exit")
	}
	if ws.ExitStatus() != 0 {
		t.Errorf("second generation exit status %d", ws.ExitStatus())
	}
}
