package k8stest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// ErrUnavailable: a cluster cannot run here (not Linux, not root, or a
// program or kernel feature it needs is missing). Available and Start wrap
// it with the reason.
var ErrUnavailable = errors.New("k8stest: cannot run a cluster here")

// The cluster's addresses. They exist only inside its network namespace.
const (
	// NodeIP is the node's address (on the namespace's loopback device):
	// the API server listens on NodeIP:6443, the kubelet on NodeIP:10250.
	NodeIP = "10.250.0.1"
	// PodCIDR is the pods' subnet, on the bridge cni0 (gateway 10.244.0.1).
	PodCIDR = "10.244.0.0/24"
	// ServiceCIDR is the Services' cluster IP range.
	ServiceCIDR = "10.96.0.0/16"
	// NodeName is the name of the cluster's one node.
	NodeName = "handoff-k8stest"
)

// ColdBuild is what a build of the cluster's binaries costs when neither
// they nor Go's build cache have it, measured on 2 cores.
const ColdBuild = "13 min on 2 cores, 1.9 GB of memory at most"

// ColdBuildTimeout is the time New asks a test to have left when the
// binaries are not cached (go test's default -timeout, 10 min, is too
// short for a cold build).
const ColdBuildTimeout = 25 * time.Minute

// Defaults for Options.
const (
	DefaultLifetime     = 30 * time.Minute
	DefaultStartTimeout = 5 * time.Minute
	DefaultBuildTimeout = 40 * time.Minute
)

// Options configure Start. The zero value means all defaults.
type Options struct {
	// Lifetime is the hard limit of the cluster: every process of it is
	// killed then, whatever the test does. Default DefaultLifetime.
	Lifetime time.Duration
	// StartTimeout bounds the boot, from the namespace's creation to a
	// Ready node (the build and the wait for another cluster on the
	// machine excluded). Default DefaultStartTimeout.
	StartTimeout time.Duration
	// BuildTimeout bounds the build of the cluster's binaries when they
	// are not cached. Default DefaultBuildTimeout.
	BuildTimeout time.Duration
	// Logf, if set, receives progress lines (the build, each component
	// started, the timings). Default: none.
	Logf func(format string, args ...any)
	// Locked, if set, is called once this cluster holds the machine (no
	// other cluster runs until it ends) and before it changes anything
	// of the host: where a test takes its picture of the host to compare
	// after Close. Default: none.
	Locked func()
}

// Timings are how long the phases of Start took.
type Timings struct {
	// Lock is the wait for another cluster of this machine to end.
	Lock time.Duration
	// Build is the build of the binaries, or the look-up of the cached ones.
	Build time.Duration
	// Cached says the binaries came from the cache.
	Cached bool
	// Boot runs from the namespace's creation to a Ready node that
	// accepts pods.
	Boot time.Duration
}

// RequireAvailable ends t where no cluster can run (Available): it fails
// t with CI set or as root, so that CI or a machine set up for the test
// cannot pass by skipping, and skips it with the reason elsewhere (a
// developer who is not root).
func RequireAvailable(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv("CI") != "" || os.Geteuid() == 0 {
			t.Fatalf("a cluster must run here (CI set or root): %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
}

// New starts a cluster for t (Start with opts, progress to t.Logf) and
// closes it when t ends, checking that the teardown succeeded; on a failed
// test it logs the tail of every component's log first. Where no cluster
// can run it ends t as RequireAvailable does.
func New(t testing.TB, opts Options) *Cluster {
	t.Helper()
	RequireAvailable(t)
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok && !binariesCached() {
		if deadline, ok := d.Deadline(); ok && time.Until(deadline) < ColdBuildTimeout {
			t.Fatalf("the cluster's binaries are not cached and the test ends in %s: a cold build needs %s (%s); run with -timeout 30m or more",
				time.Until(deadline).Round(time.Second), ColdBuildTimeout, ColdBuild)
		}
	}
	c, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, name := range c.Components() {
				t.Logf("--- %s (last lines of %s)\n%s", name, c.LogFile(name), tail(c.LogFile(name), 40))
			}
		}
		if err := c.Close(); err != nil {
			t.Errorf("cluster teardown: %v", err)
		}
	})
	return c
}

// tail returns the last n lines of a file.
func tail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// BuildStatic builds the main package pkg (an import path, or a directory
// relative to the current one) as a static Linux binary at out, ready for
// ImportImage. ctx bounds the build.
func BuildStatic(ctx context.Context, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("k8stest: go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}
