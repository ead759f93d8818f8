//go:build unix

package signal_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	ossignal "os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/signal"
)

// helperEnv, when set, makes the test binary a child process that runs the
// named scenario (see helperMain) instead of the tests.
const helperEnv = "HANDOFF_SIGNAL_TEST_HELPER"

// setUpProcess runs before the tests: as the helper child it runs the
// scenario and exits.
func setUpProcess() {
	if scenario := os.Getenv(helperEnv); scenario != "" {
		os.Exit(helperMain(scenario))
	}
	// A storm of SIGHUPs may still be on its way through the kernel and the
	// runtime when the Run that asked for it has returned and unsubscribed;
	// this never-read channel keeps such a straggler from killing the test
	// binary. It does not change what any Run receives.
	ossignal.Notify(make(chan os.Signal, 1), syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
}

// raise sends sig to the test process itself. Callers make sure a Run has
// subscribed to sig (or the guard in setUpProcess has).
func raise(t testing.TB, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, syscall.Kill(os.Getpid(), sig), "kill %v", sig)
}

// helperMain is the child process: it runs Run as a program would (real
// signals, default Kill) for one scenario, and says what happens on stdout,
// one line at a time. It returns the exit status.
func helperMain(scenario string) int {
	say := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := signal.Options{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		OnEvent: func(e signal.Event) {
			if e.Kind == signal.EventReady {
				say("ready")
			}
		},
	}
	a := signal.Actions{
		Upgrade: func(context.Context) error { say("upgrade"); return nil },
		Stop: func(ctx context.Context, cause error) error {
			say("stop: %v", cause)
			return errors.New("drained with 1 error")
		},
	}
	switch scenario {
	case "start":
		// Start subscribes before it returns: a SIGTERM right after it,
		// before the dispatching goroutine can have run, is a graceful
		// stop, not the default disposition's death.
		wait, err := signal.Start(ctx, a, opts)
		if err != nil {
			say("start: %v", err)
			return 2
		}
		if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
			say("kill: %v", err)
			return 2
		}
		say("raised")
		say("run returned: %v", wait())
		return 0
	case "stop", "quit":
	case "slowstop":
		a.Stop = func(ctx context.Context, cause error) error {
			say("stopping: %v", cause)
			<-ctx.Done()
			say("Kill returned")
			return nil
		}
	case "unsubscribe":
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			cancel()
		}()
	case "nostop":
		// a.Stop is nil: SIGTERM keeps its default action.
		a.Stop = nil
	default:
		say("unknown scenario %q", scenario)
		return 2
	}
	err := signal.Run(ctx, a, opts)
	say("run returned: %v", err)
	if scenario == "unsubscribe" {
		// Wait (bounded) for the parent's SIGHUP, which must now kill us.
		time.Sleep(waitTimeout)
		say("still alive")
		return 3
	}
	return 0
}

// child is the test binary re-executed as a helper.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr bytes.Buffer
	lines  chan string
	out    []string
	state  *os.ProcessState
}

func startChild(t *testing.T, scenario string) *child {
	t.Helper()
	c := &child{lines: make(chan string, 100)}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), helperEnv+"="+scenario)
	c.cmd.Stderr = &c.stderr
	stdout, err := c.cmd.StdoutPipe()
	require.NoError(t, err)
	c.stdin, err = c.cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, c.cmd.Start())
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		if c.state == nil {
			_ = c.cmd.Process.Kill()
			c.wait(t)
		}
	})
	c.waitLine(t, "ready")
	return c
}

// waitLine waits for a line that starts with prefix and returns it.
func (c *child) waitLine(t *testing.T, prefix string) string {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-c.lines:
			require.True(t, ok, "child exited before saying %q; said %q; stderr:\n%s", prefix, c.out, c.stderrText())
			c.out = append(c.out, l)
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timer.C:
			t.Fatalf("child did not say %q within %v; said %q", prefix, waitTimeout, c.out)
		}
	}
}

func (c *child) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, c.cmd.Process.Signal(sig))
}

// wait reads the rest of the child's output and waits for it to exit.
func (c *child) wait(t *testing.T) *os.ProcessState {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for done := false; !done; {
		select {
		case l, ok := <-c.lines:
			if !ok {
				done = true
				continue
			}
			c.out = append(c.out, l)
		case <-timer.C:
			_ = c.cmd.Process.Kill()
			t.Errorf("child did not exit within %v; said %q", waitTimeout, c.out)
			timer.Reset(waitTimeout)
		}
	}
	_ = c.cmd.Wait()
	c.state = c.cmd.ProcessState
	return c.state
}

// stderrText may only be read once the child has exited or from a failing
// test about to stop; it is for diagnostics.
func (c *child) stderrText() string {
	if c.state == nil {
		return "(still running)"
	}
	return c.stderr.String()
}

func TestProcessGracefulStop(t *testing.T) {
	c := startChild(t, "stop")
	c.signal(t, syscall.SIGTERM)
	st := c.wait(t)
	assert.Equal(t, 0, st.ExitCode(), "stderr:\n%s", c.stderrText())
	assert.Equal(t, []string{
		"ready",
		"stop: signal: terminated signal received: graceful stop",
		"run returned: drained with 1 error",
	}, c.out)
}

// TestProcessStartSubscribesBeforeReturning: a SIGTERM the process sends
// itself as soon as Start has returned is handled (Stop runs, exit 0); had
// Start left the subscription to its goroutine, it would have killed the
// process.
func TestProcessStartSubscribesBeforeReturning(t *testing.T) {
	c := startChild(t, "start")
	st := c.wait(t)
	assert.Equal(t, 0, st.ExitCode(), "stderr:\n%s", c.stderrText())
	assert.ElementsMatch(t, []string{
		"ready",
		"raised",
		"stop: signal: terminated signal received: graceful stop",
		"run returned: drained with 1 error",
	}, c.out)
	if assert.NotEmpty(t, c.out) {
		assert.Equal(t, "run returned: drained with 1 error", c.out[len(c.out)-1])
	}
}

func TestProcessUpgradeThenStop(t *testing.T) {
	c := startChild(t, "stop")
	c.signal(t, syscall.SIGHUP)
	c.waitLine(t, "upgrade")
	c.signal(t, syscall.SIGINT)
	st := c.wait(t)
	assert.Equal(t, 0, st.ExitCode(), "stderr:\n%s", c.stderrText())
	assert.Equal(t, []string{
		"ready",
		"upgrade",
		"stop: signal: interrupt signal received: graceful stop",
		"run returned: drained with 1 error",
	}, c.out)
}

func TestProcessSecondStopExits(t *testing.T) {
	c := startChild(t, "slowstop")
	c.signal(t, syscall.SIGTERM)
	c.waitLine(t, "stopping: signal: terminated signal received: graceful stop")
	c.signal(t, syscall.SIGTERM)
	st := c.wait(t)
	assert.Equal(t, signal.DefaultKillExitCode, st.ExitCode(), "stderr:\n%s", c.stderrText())
	assert.NotContains(t, c.out, "Kill returned")
	assert.Contains(t, c.stderrText(), `level=WARN msg="signal: kill started" event=started error="signal: terminated signal received: immediate stop" action=kill signal=terminated`)
}

func TestProcessQuitExits(t *testing.T) {
	c := startChild(t, "quit")
	c.signal(t, syscall.SIGQUIT)
	st := c.wait(t)
	assert.Equal(t, signal.DefaultKillExitCode, st.ExitCode(), "stderr:\n%s", c.stderrText())
	assert.Equal(t, []string{"ready"}, c.out, "Stop ran or Run returned")
}

// TestProcessUnsubscribes: once Run has returned (its context done), SIGHUP
// has its default action again and kills the process.
func TestProcessUnsubscribes(t *testing.T) {
	c := startChild(t, "unsubscribe")
	require.NoError(t, c.stdin.Close()) // the child cancels Run's context
	c.waitLine(t, "run returned: context canceled")
	c.signal(t, syscall.SIGHUP)
	st := c.wait(t)
	ws := st.Sys().(syscall.WaitStatus)
	assert.True(t, ws.Signaled(), "child was not killed by a signal: %v; said %q", st, c.out)
	assert.Equal(t, syscall.SIGHUP, ws.Signal(), "the signal that killed the child")
}

// TestProcessNilStopNotSubscribed: with Stop nil, SIGTERM is not taken over
// and kills the process, as it would without Run. (A nil Reload cannot be
// checked this way: Go ignores SIGUSR2 when nothing is subscribed to it.)
func TestProcessNilStopNotSubscribed(t *testing.T) {
	c := startChild(t, "nostop")
	c.signal(t, syscall.SIGTERM)
	st := c.wait(t)
	ws := st.Sys().(syscall.WaitStatus)
	assert.True(t, ws.Signaled(), "child was not killed by a signal: %v; said %q", st, c.out)
	assert.Equal(t, syscall.SIGTERM, ws.Signal(), "the signal that killed the child")
	assert.Equal(t, []string{"ready"}, c.out)
}
