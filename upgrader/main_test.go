//go:build linux

package upgrader_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/handoff-go/handoff/internal/servertest"
)

// The process-level tests run the example server (examples/httpserver, on
// handoff.Run), built in TestMain in several variants: the normal build and
// deliberately broken ones. file_test.go's helper is this test binary itself.
var servers *servertest.Builds

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		os.Exit(helperMain(dir))
	}
	var err error
	servers, err = servertest.Build("github.com/handoff-go/handoff/examples/httpserver", raceEnabled,
		"", "exit", "hang", "unhealthy", "probation-unhealthy", "crash",
		"legacy-accept", "legacy-accept+probation-unhealthy")
	if err != nil {
		fmt.Fprintln(os.Stderr, "building the test servers:", err)
		os.Exit(2)
	}
	// Generations whose parent exited are reparented to this process, so
	// that the tests can reap them and see every exit status.
	if err := servertest.MakeSubreaper(); err != nil {
		servers.Remove()
		fmt.Fprintln(os.Stderr, "PR_SET_CHILD_SUBREAPER:", err)
		os.Exit(2)
	}
	code := m.Run()
	servers.Remove()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// start starts the normal build with args and waits until its first
// generation serves.
func start(t *testing.T, args ...string) *servertest.Server {
	t.Helper()
	s, _ := servertest.Start(t, servers, servertest.Options{Args: args})
	return s
}
