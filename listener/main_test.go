package listener_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// BenchmarkDrain re-executes the test binary as its client process,
	// so that the client's file descriptors do not count against ours.
	if spec := os.Getenv(benchClientEnv); spec != "" {
		os.Exit(benchClient(spec))
	}
	goleak.VerifyTestMain(m)
}
