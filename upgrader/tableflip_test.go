//go:build linux

package upgrader

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/internal/proc"
	"github.com/handoff-go/handoff/internal/servertest"
)

// The contract between upgrader and tableflip: tableflip reports failures
// only as text, and classifyTF is the one place that reads it. These tests
// drive real tableflip failures in real processes (this test binary, run
// again as a tableflip parent and its children) and check that each is
// classified as the engine expects. An upgrade of tableflip that changes a
// text fails here.

const (
	contractEnv = "HANDOFF_TF_CONTRACT" // the case a parent helper runs
	childEnv    = "HANDOFF_TF_CHILD"    // what a child of the helper does
	outEnv      = "HANDOFF_TF_OUT"      // where a child writes its result
)

func init() {
	// The helper processes run before TestMain: a test binary has one.
	if c := os.Getenv(childEnv); c != "" && os.Getenv(sentinelEnv) != "" {
		os.Exit(contractChild(c))
	}
	if c := os.Getenv(contractEnv); c != "" {
		os.Exit(contractParent(c))
	}
}

// contractResult is what a helper prints.
type contractResult struct {
	Kind   tfKind
	Status string
	Code   int
	Text   string
}

func report(e *tfError) contractResult {
	if e == nil {
		return contractResult{Kind: -1, Text: "nil"}
	}
	return contractResult{Kind: e.kind, Status: e.status, Code: e.code, Text: e.Error()}
}

func contractParent(c string) int {
	opts := tableflip.Options{UpgradeTimeout: 10 * time.Second}
	if c == "timeout" {
		opts.UpgradeTimeout = 300 * time.Millisecond
	}
	tf, err := tableflip.New(opts)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	if c != "not-ready" {
		if err := tf.Ready(); err != nil {
			fmt.Println("error", err)
			return 1
		}
	}
	upgrade := func(child string) *tfError {
		os.Setenv(childEnv, child)
		if c == "not-ready" {
			return classifyTF(tf.Upgrade())
		}
		return tfUpgrade(tf) // rides out tableflip's lag behind its own Ready
	}
	var res contractResult
	switch c {
	case "exit":
		res = report(upgrade("exit3"))
	case "timeout":
		res = report(upgrade("sleep"))
	case "terminating":
		go func() {
			time.Sleep(300 * time.Millisecond) // the child is started by then; a scenario, not a synchronisation
			tf.Stop()
		}()
		res = report(upgrade("sleep"))
	case "cannot-start":
		os.Args[0] = filepath.Join(os.TempDir(), "handoff-no-such-binary")
		res = report(upgrade("exit3"))
	case "not-ready":
		res = report(upgrade("exit3"))
	case "busy":
		done := make(chan *tfError, 1)
		go func() { done <- upgrade("sleep") }()
		time.Sleep(300 * time.Millisecond) // the first upgrade runs by then
		res = report(classifyTF(tf.Upgrade()))
		tf.Stop()
		<-done
	case "upgraded":
		if e := upgrade("ready"); e != nil {
			fmt.Println("error", e)
			return 1
		}
		res = report(classifyTF(tf.Upgrade()))
	case "parent-alive":
		// The child calls Ready, then Upgrade while this process lives.
		if e := upgrade("upgrade-early"); e != nil {
			fmt.Println("error", e)
			return 1
		}
		out := os.Getenv(outEnv)
		for range 200 { // bounded: 10 s
			if b, err := os.ReadFile(out); err == nil && len(b) > 0 {
				if json.Unmarshal(b, &res) == nil {
					break
				}
			}
			time.Sleep(50 * time.Millisecond) // polling a file the child writes
		}
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return 0
}

func contractChild(c string) int {
	switch c {
	case "exit3":
		return 3
	case "sleep":
		time.Sleep(30 * time.Second)
		return 0
	}
	tf, err := tableflip.New(tableflip.Options{})
	if err != nil {
		return 1
	}
	if err := tf.Ready(); err != nil {
		return 1
	}
	if c == "upgrade-early" {
		var e *tfError
		for range 200 { // ride out tableflip's lag behind its own Ready
			if e = classifyTF(tf.Upgrade()); e == nil || e.kind != tfNotReady {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		b, _ := json.Marshal(report(e))
		tmp := os.Getenv(outEnv) + ".tmp"
		_ = os.WriteFile(tmp, b, 0o600)
		_ = os.Rename(tmp, os.Getenv(outEnv))
	}
	return 0
}

func TestTableflipContract(t *testing.T) {
	for _, tc := range []struct {
		name   string
		kind   tfKind
		status string
	}{
		{"exit", tfExited, "exit status 3"},
		{"timeout", tfTimedOut, ""},
		{"terminating", tfTerminating, ""},
		{"cannot-start", tfCannotStart, ""},
		{"not-ready", tfNotReady, ""},
		{"busy", tfBusy, ""},
		{"upgraded", tfUpgraded, ""},
		{"parent-alive", tfParentAlive, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The helper's children outlive it and are reparented to this
			// process (the package's tests make it a subreaper): reap them.
			before := proc.Children(os.Getpid())
			defer reapNew(t, before)
			out := filepath.Join(t.TempDir(), "child.json")
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), contractEnv+"="+tc.name, outEnv+"="+out)
			b, err := cmd.Output()
			require.NoError(t, err, "helper output: %s", b)
			var res contractResult
			require.NoError(t, json.Unmarshal(lastLine(b), &res), "helper output: %s", b)
			assert.Equal(t, tc.kind, res.Kind, "tableflip said %q", res.Text)
			assert.Equal(t, tc.status, res.Status, "tableflip said %q", res.Text)
			t.Logf("tableflip: %q", res.Text)
		})
	}
}

// reapNew waits for and reaps the children of this process that are not in
// before.
func reapNew(t *testing.T, before []int) {
	for _, pid := range proc.Children(os.Getpid()) {
		if slices.Contains(before, pid) {
			continue
		}
		_, err := servertest.WaitPID(pid, 30*time.Second)
		var nc *servertest.NotChildError
		if err != nil && !errors.As(err, &nc) {
			t.Errorf("child %d of a helper: %v", pid, err)
		}
	}
}

func lastLine(b []byte) []byte {
	lines := splitLines(b)
	if len(lines) == 0 {
		return nil
	}
	return lines[len(lines)-1]
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	start := 0
	for i, c := range b {
		if c == '\n' {
			if i > start {
				out = append(out, b[start:i])
			}
			start = i + 1
		}
	}
	if start < len(b) {
		out = append(out, b[start:])
	}
	return out
}
