package plugin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"

	"github.com/hashicorp/go-plugin/runner"
)

// procRunner is the runner.Runner go-plugin drives for each plugin process
// (through ClientConfig.RunnerFunc). It differs from go-plugin's own command
// runner in three ways: the binary's checksum is verified again immediately
// before exec, the process is forked from the manager's spawner thread with a
// parent-death signal (see spawner), and it reports the process's exit on a
// channel, so the manager notices a crash as an event rather than by polling.
type procRunner struct {
	cmd    *exec.Cmd
	stdout io.ReadCloser
	stderr io.ReadCloser
	sum    [sha256.Size]byte
	spawn  *spawner

	pid      int
	mu       sync.Mutex
	proc     *os.Process // set once started
	aborted  bool
	exited   chan struct{}
	exitOnce sync.Once
	exitErr  error
}

var _ runner.Runner = (*procRunner)(nil)

func newProcRunner(cmd *exec.Cmd, path string, args []string, sum [sha256.Size]byte, sp *spawner) *procRunner {
	cmd.Path = path
	cmd.Args = append([]string{path}, args...)
	setParentDeath(cmd)
	return &procRunner{cmd: cmd, sum: sum, spawn: sp, exited: make(chan struct{})}
}

// errAborted is the start of a runner aborted before it started.
var errAborted = errors.New("plugin: start aborted")

// Start verifies the staged binary once more with a fresh hash (the staged
// file lives in a private directory with mode 0555, so this only catches
// tampering by someone with our privileges, or disk corruption) and starts it.
// The pipes are made here, once nothing can fail before exec does: a Cmd
// that is never started would leave them open.
func (r *procRunner) Start(context.Context) error {
	sum, err := hashFile(r.cmd.Path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrChecksum, err)
	}
	if subtle.ConstantTimeCompare(sum[:], r.sum[:]) != 1 {
		return fmt.Errorf("%w: staged file %s changed after staging", ErrChecksum, r.cmd.Path)
	}
	r.mu.Lock()
	aborted := r.aborted
	r.mu.Unlock()
	if aborted {
		return errAborted
	}
	if r.stdout, err = r.cmd.StdoutPipe(); err != nil {
		return err
	}
	if r.stderr, err = r.cmd.StderrPipe(); err != nil {
		return err
	}
	if err := r.spawn.start(r.cmd); err != nil {
		return err
	}
	r.pid = r.cmd.Process.Pid
	r.mu.Lock()
	r.proc = r.cmd.Process
	aborted = r.aborted
	r.mu.Unlock()
	if aborted {
		_ = r.proc.Kill()
	}
	return nil
}

// abort kills the process, now or as soon as it is started: go-plugin's
// handshake wait observes no context, only its StartTimeout, so this is how
// a cancelled start (Close, the caller's ctx) ends early.
func (r *procRunner) abort() {
	r.mu.Lock()
	r.aborted = true
	p := r.proc
	r.mu.Unlock()
	if p != nil {
		_ = p.Kill()
	}
}

// Wait is called once by go-plugin, after the process's stdout and stderr
// are drained.
func (r *procRunner) Wait(context.Context) error {
	err := r.cmd.Wait()
	r.exitOnce.Do(func() {
		r.exitErr = err
		close(r.exited)
	})
	return err
}

func (r *procRunner) Kill(context.Context) error {
	if r.cmd.Process == nil {
		return nil
	}
	if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

func (r *procRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *procRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *procRunner) Name() string          { return r.cmd.Path }

// ID is the pid. go-plugin's Client.Kill does nothing for an empty ID.
func (r *procRunner) ID() string {
	if r.pid == 0 {
		return ""
	}
	return strconv.Itoa(r.pid)
}

func (r *procRunner) Diagnose(context.Context) string {
	return fmt.Sprintf("the plugin %s did not complete the go-plugin handshake: wrong magic cookie or protocol version, "+
		"a binary for another platform, or not a go-plugin plugin at all", r.cmd.Path)
}

func (r *procRunner) PluginToHost(n, a string) (string, string, error) { return n, a, nil }
func (r *procRunner) HostToPlugin(n, a string) (string, string, error) { return n, a, nil }

// spawner starts plugin processes from one goroutine locked to its OS thread
// for the manager's whole life.
//
// Linux delivers the parent-death signal (SysProcAttr.Pdeathsig) when the
// *thread* that forked the child exits, not the process. The Go runtime
// destroys a thread when a goroutine locked to it exits, so a plugin forked
// from an arbitrary goroutine's thread could be killed whenever some other
// goroutine that later ran on that thread locks it and exits. Forking always
// from one thread that lives until Close removes the risk. stop makes the
// goroutine exit still locked, which destroys the thread: after Close no
// plugin should be alive, and if one is, the signal ends it.
type spawner struct {
	reqs chan spawnReq
	done chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

type spawnReq struct {
	cmd   *exec.Cmd
	reply chan error
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan spawnReq), done: make(chan struct{})}
	s.wg.Add(1)
	go s.run()
	return s
}

func (s *spawner) run() {
	defer s.wg.Done()
	lockThread()
	for {
		select {
		case r := <-s.reqs:
			r.reply <- r.cmd.Start()
		case <-s.done:
			return // still locked: the runtime ends the thread
		}
	}
}

func (s *spawner) start(cmd *exec.Cmd) error {
	reply := make(chan error, 1)
	select {
	case s.reqs <- spawnReq{cmd: cmd, reply: reply}:
		return <-reply
	case <-s.done:
		return ErrClosed
	}
}

// stop is idempotent and waits for the goroutine.
func (s *spawner) stop() {
	s.once.Do(func() { close(s.done) })
	s.wg.Wait()
}

func hashFile(path string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	h.Sum(sum[:0])
	return sum, nil
}
