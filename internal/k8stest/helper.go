package k8stest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

// Func is a function that Call runs in a helper process inside the
// cluster's network namespace: the load generator, typically, whose
// connections (made with the standard dialer, from any goroutine) must
// reach Service cluster IPs. It gets Call's arg and returns Call's result;
// ctx ends when Call's ctx does (the helper gets SIGTERM).
type Func func(ctx context.Context, arg []byte) ([]byte, error)

// helperEnv names the Func a helper process runs.
const helperEnv = "HANDOFF_K8STEST_HELPER"

// RunHelper must be the first call of TestMain in a package whose tests
// use Call. In a helper process started by Call it runs funcs[name] and
// exits (status 0 with the result, 1 with the error on stderr); in any
// other process it returns at once.
//
// A helper is the test binary itself, started again with every goroutine
// and thread inside the namespace: Go cannot move a running process's
// threads into a network namespace, only one locked thread at a time
// (what Dial does), and a load generator dials from many goroutines.
func RunHelper(funcs map[string]Func) {
	name, ok := os.LookupEnv(helperEnv)
	if !ok {
		return
	}
	fn := funcs[name]
	if fn == nil {
		fmt.Fprintf(os.Stderr, "k8stest: no helper function %q in this test binary\n", name)
		os.Exit(2)
	}
	arg, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "k8stest: helper %s: read argument: %v\n", name, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	out, err := fn(ctx, arg)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "k8stest: helper %s: %v\n", name, err)
		os.Exit(1)
	}
	// The result goes to fd 3, so that what fn prints cannot corrupt it.
	res := os.NewFile(3, "result")
	if _, err := res.Write(out); err != nil {
		fmt.Fprintf(os.Stderr, "k8stest: helper %s: write result: %v\n", name, err)
		os.Exit(2)
	}
	os.Exit(0)
}

// Call runs the Func registered as name with RunHelper in a helper process
// inside the cluster's network namespace (see Command), passes it arg, and
// returns its result; the helper's output (stdout and stderr) is in the
// error when it fails. ctx bounds it: the helper gets SIGTERM when ctx
// ends and SIGKILL 5 s later; a Func that returns when its ctx ends (a
// load stopped by cancelling Call's ctx) still has its result returned,
// without an error, if it exits within those 5 s.
func (c *Cluster) Call(ctx context.Context, name string, arg []byte) ([]byte, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := c.Command(ctx, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+name)
	cmd.Stdin = bytes.NewReader(arg)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd.ExtraFiles = []*os.File{w}
	// The helper's parent-death signal fires when the thread that
	// started it ends: keep that thread until the helper is done.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = cmd.Start()
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("k8stest: helper %s: %w", name, err)
	}
	res, rerr := io.ReadAll(r)
	// A helper that returns when ctx ends (its SIGTERM: a load generator
	// stopped by its caller) still gives its result: exec.Cmd's Wait
	// reports ctx's error once it has sent the signal, whatever the
	// helper's exit status, so that status decides.
	if err := cmd.Wait(); err != nil && (cmd.ProcessState == nil || !cmd.ProcessState.Success()) {
		return nil, fmt.Errorf("k8stest: helper %s: %w\n%s", name, err, output.Bytes())
	}
	if rerr != nil {
		return nil, fmt.Errorf("k8stest: helper %s: read result: %w", name, rerr)
	}
	return res, nil
}

// HTTPClient returns a new HTTP client whose connections are made inside
// the cluster's network namespace (Dial), with a 10 s limit per request.
// Call its CloseIdleConnections when done with it.
func (c *Cluster) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: c.Dial}, Timeout: 10 * time.Second}
}
