package upgradertest_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNoGRPC: a program that imports upgradertest (for Handler, say) does
// not link gRPC; its gRPC clients are in grpcload.
func TestNoGRPC(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/handoff-go/handoff/upgrader/upgradertest").Output()
	require.NoError(t, err)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "golang.org/x/net/http2")
	for _, d := range deps {
		assert.False(t, strings.HasPrefix(d, "google.golang.org/grpc") || strings.HasPrefix(d, "google.golang.org/protobuf"), d)
	}
}
