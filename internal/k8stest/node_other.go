//go:build !linux

package k8stest

import (
	"context"
	"fmt"
	"net"
	"os/exec"
)

// node is empty where no cluster can run.
type node struct{}

// Available reports why a cluster cannot run here: it needs Linux.
func Available() error { return fmt.Errorf("%w: Linux only", ErrUnavailable) }

// Start returns an error wrapping ErrUnavailable: clusters need Linux.
func Start(context.Context, Options) (*Cluster, error) { return nil, Available() }

// Close does nothing: no cluster runs here.
func (c *Cluster) Close() error { return c.n.close() }

func (*node) close() error { return nil }

// Dial returns an error wrapping ErrUnavailable.
func (c *Cluster) Dial(context.Context, string, string) (net.Conn, error) { return nil, Available() }

// Command returns a command whose Start fails with an error wrapping
// ErrUnavailable.
func (c *Cluster) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Err = Available()
	return cmd
}

// ImportImage returns an error wrapping ErrUnavailable.
func (c *Cluster) ImportImage(context.Context, string, string) error { return Available() }

// WaitService returns an error wrapping ErrUnavailable.
func (c *Cluster) WaitService(context.Context, string, string, int) (string, error) {
	return "", Available()
}

func binariesCached() bool { return false }
