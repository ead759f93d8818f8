//go:build linux

package upgrader_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/internal/servertest"
	"github.com/handoff-go/handoff/signal"
	"github.com/handoff-go/handoff/upgrader"
)

// helperEnv selects the helper program below when this test binary is run by
// a test (and by the upgrades of that run, which inherit the environment).
// Its value is the directory the helper keeps its journal in.
const helperEnv = "HANDOFF_UPGRADER_TEST_HELPER"

// helperMain is a minimal server made of this test binary and composed by
// hand from upgrader and signal: it registers a file with File and a tcp6
// listener, and prints what it inherited. Each generation appends a line to
// the file; the next one reads them all. It is composed the way
// handoff.Run does it: signals handled before Ready, a Stop action that
// returns once the drain is over, and Exit waited for again when Drain says
// the successor died (ErrReclaimed).
func helperMain(dir string) int {
	upg, err := upgrader.New(upgrader.Options{})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	code := serveHelper(upg, dir)
	if err := upg.Close(); err != nil {
		fmt.Println("error", err)
		code = 1
	}
	return code
}

// serveHelper is one generation of the helper: it appends to the journal,
// serves on the tcp6 listener, and is upgraded or stopped by signals.
func serveHelper(upg *upgrader.Upgrader, dir string) int {
	f, journal, err := appendJournal(upg, dir)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer f.Close()
	ln, err := upg.Listen("tcp6", "[::1]:0")
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	served := answerPID(ln)
	defer served()

	// Signals are handled before Ready: once this generation is in charge,
	// no SIGHUP or SIGTERM may find the default disposition.
	drained := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	sigDone := make(chan error, 1)
	go func() {
		sigDone <- signal.Run(ctx, signal.Actions{
			Upgrade: upg.Upgrade,
			Stop: func(ctx context.Context, _ error) error {
				upg.Stop()
				select { // the graceful stop is over once drained
				case <-drained:
					return nil
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			},
		}, signal.Options{OnEvent: func(e signal.Event) {
			if e.Kind == signal.EventReady {
				close(ready)
			}
		}})
	}()
	defer func() {
		cancel()
		<-sigDone
	}()
	select {
	case <-ready:
	case err := <-sigDone:
		sigDone <- err // for the deferred wait
		fmt.Println("error", err)
		upg.Stop()
		_, _ = upg.Drain(context.Background())
		return 1
	}

	code := 0
	if err := upg.Ready(ctx); err != nil {
		// Exit is closed: drain and exit.
		fmt.Println("error", err)
		code = 1
	} else {
		fmt.Printf("ready pid=%d addr=%s journal=%q\n", os.Getpid(), ln.Addr(), journal)
	}
	drainOnExit(upg)
	close(drained)
	return code
}

// appendJournal opens the journal, registered with File (inherited from
// the previous generation, or made in dir), appends this generation's line,
// and returns the file and all its lines.
func appendJournal(upg *upgrader.Upgrader, dir string) (*os.File, []byte, error) {
	f, err := upg.File("journal", func() (*os.File, error) {
		// In the test's directory, so that nothing is left behind.
		return os.OpenFile(filepath.Join(dir, "journal"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	})
	if err != nil {
		return nil, nil, err
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, nil, err
	}
	fmt.Fprintf(f, "generation %d pid %d\n", upg.Generation(), os.Getpid())
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, err
	}
	journal, _ := io.ReadAll(f)
	return f, journal, nil
}

// answerPID answers every connection to ln with this process's pid until
// ln is closed (by Drain); wait waits for it to stop.
func answerPID(ln net.Listener) (wait func()) {
	var serving sync.WaitGroup
	serving.Add(1)
	go func() {
		defer serving.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // Drain closed the listener
			}
			fmt.Fprintf(c, "pid %d\n", os.Getpid())
			c.Close()
		}
	}()
	return serving.Wait
}

// drainOnExit waits for Exit and drains; when the successor died
// (ErrReclaimed), this generation serves again and waits for Exit again.
func drainOnExit(upg *upgrader.Upgrader) {
	for {
		<-upg.Exit()
		dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := upg.Drain(dctx)
		dcancel()
		if !errors.Is(err, upgrader.ErrReclaimed) {
			return
		}
	}
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
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	r, w, err := os.Pipe()
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = w, os.Stderr
	require.NoError(t, cmd.Start())
	w.Close()
	defer r.Close()
	pid2 := 0
	t.Cleanup(func() {
		// A failed test leaves no generation running.
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if pid2 != 0 && syscall.Kill(pid2, syscall.SIGKILL) == nil {
			_, _ = servertest.WaitPID(pid2, 10*time.Second)
		}
	})
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
			require.True(t, ok, "helper exited")
			require.False(t, strings.HasPrefix(l, "error"), l)
			return l
		case <-time.After(30 * time.Second):
			require.FailNow(t, "no line from the helper within 30s")
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
	require.True(t, strings.HasPrefix(addr, "[::1]:"), "first generation: %s", first)
	require.NoError(t, syscall.Kill(cmd.Process.Pid, syscall.SIGHUP))
	second := next()
	assert.Equal(t, addr, field(second, "addr"), "second generation's address")
	pid2, err = strconv.Atoi(field(second, "pid"))
	require.NoError(t, err, second)
	wantJournal := fmt.Sprintf("generation 1 pid %d\ngeneration 2 pid %d\n", cmd.Process.Pid, pid2)
	_, got, _ := strings.Cut(second, "journal=")
	assert.Equal(t, strconv.Quote(wantJournal), got, "journal read by the second generation")
	assert.NoError(t, cmd.Wait(), "first generation")
	c, err := net.DialTimeout("tcp6", addr, 10*time.Second)
	require.NoError(t, err)
	b, _ := io.ReadAll(c)
	c.Close()
	assert.Equal(t, fmt.Sprintf("pid %d\n", pid2), string(b))
	require.NoError(t, syscall.Kill(pid2, syscall.SIGTERM))
	code, err := servertest.WaitPID(pid2, 30*time.Second)
	require.NoError(t, err, "second generation")
	pid2 = 0
	assert.Zero(t, code, "second generation exit status")
	journal, err := os.ReadFile(filepath.Join(dir, "journal"))
	require.NoError(t, err)
	assert.Equal(t, wantJournal, string(journal), "the journal file")
}
