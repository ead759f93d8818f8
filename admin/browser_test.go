//go:build linux

package admin_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/handoff-go/handoff/internal/servertest"
	"github.com/handoff-go/handoff/upgrader/upgradertest"
)

// screenshotEnv names the file TestAdminPageInChromium writes a screenshot
// of the page to, taken during an upgrade: the README's picture is made
// with
//
//	HANDOFF_ADMIN_SCREENSHOT=$PWD/admin/testdata/admin-page.png go test -run TestAdminPageInChromium ./admin
const screenshotEnv = "HANDOFF_ADMIN_SCREENSHOT"

// TestAdminPageInChromium (issue 13, acceptance b): headless Chromium
// loads the admin page of examples/httpserver (a real process, upgraded
// for real, under load), sees the generation change during an upgrade
// without a reload of the page, is refused (403) a control without the
// token while nothing changes, then with the token upgrades by a click and
// changes a flag's rollout, and sees each effect on the page.
func TestAdminPageInChromium(t *testing.T) {
	chrome := requireTool(t, "chromium", "chromium")
	builds, err := servertest.Build("github.com/handoff-go/handoff/examples/httpserver", raceEnabled, "", "probation-unhealthy")
	require.NoError(t, err)
	t.Cleanup(builds.Remove)
	require.NoError(t, servertest.MakeSubreaper())

	flagsFile := filepath.Join(t.TempDir(), "flags.json")
	write(t, flagsFile, `{"new-greeting": {"percent": 10}}`+"\n")
	s, _ := servertest.Start(t, builds, servertest.Options{Args: []string{"-admin-addr", "127.0.0.1:0", "-admin-token", token,
		"-flags", flagsFile, "-probation", "1500ms", "-upgrade-timeout", "20s"}})
	serving := s.WaitRecord(0, 10*time.Second, func(r servertest.Record) bool { return r.Msg == servertest.MsgServing })
	require.Len(t, serving.Addrs, 2, "HTTP and admin")
	page := "http://" + serving.Addrs[1] + "/"
	stopLoad := upgradertest.Start(t.Context(), upgradertest.Config{Addr: s.Addr, Pause: 20 * time.Millisecond,
		Workers:    map[upgradertest.Kind]int{upgradertest.KeepAliveChecked: 2, upgradertest.NewConn: 1, upgradertest.Stream: 1},
		StreamTime: 2 * time.Second})

	c := startChromium(t, chrome, 1280, 1000)
	c.navigate(page)
	c.eval(`window.loadedOnce = "yes"`, nil) // gone if the page reloads
	c.waitTrue(`document.getElementById("live").textContent === "live"`, 10*time.Second, "the stream is live")
	generation := func(n int) string {
		return fmt.Sprintf(`document.getElementById("gen").textContent === "generation%d"`, n)
	}
	c.waitTrue(generation(1), 5*time.Second, "generation 1")
	require.False(t, c.text("#controls") == "" || c.text("#upgrade") == "", "the controls show (the service has an Authorize hook)")

	// Without the token, the control is refused and nothing changes.
	first := s.PID()
	from := s.Mark()
	c.click("#upgrade")
	c.waitTrue(`document.getElementById("msg").textContent.includes("refused (403)")`, 10*time.Second, "the refusal shows")
	time.Sleep(time.Second)
	assert.Equal(t, first, s.PID(), "no upgrade: the PID file names the first generation")
	for _, r := range s.RecordsSince(from) {
		assert.NotEqual(t, "triggered", r.Event, "no upgrade was triggered")
	}
	c.waitTrue(generation(1), time.Second, "still generation 1")

	// With the token, a click upgrades; the page follows without a reload.
	c.typeInto("#token", token)
	c.click("#upgrade")
	c.waitTrue(generation(2), 30*time.Second, "generation 2 after the click")
	c.waitTrue(`document.getElementById("msg").textContent.includes("generation 2 committed")`, 10*time.Second, "the click's result")
	second := s.WaitRecord(from, 10*time.Second, func(r servertest.Record) bool { return r.PID == first && r.Event == "committed" }).TargetPID
	s.WaitPIDFile(second, 10*time.Second)

	// A broken build is rolled back: the history says why.
	s.Install("probation-unhealthy")
	from = s.Mark()
	s.Signal(second, syscall.SIGHUP)
	s.WaitRecord(from, 30*time.Second, func(r servertest.Record) bool { return r.Msg == servertest.MsgUpgradeFailed })
	c.waitTrue(`document.getElementById("history").textContent.includes("rolled back")`, 15*time.Second, "the rollback shows")
	c.waitTrue(generation(2), 10*time.Second, "generation 2 serves on")

	// A flag's rollout, changed in the values file by a click.
	c.typeInto(`input[aria-label="rollout of new-greeting"]`, "100")
	c.click(`input[aria-label="rollout of new-greeting"] + button`)
	c.waitTrue(`document.getElementById("msg").textContent.includes("new-greeting: 100")`, 10*time.Second, "the rollout's result")
	c.waitTrue(`document.getElementById("components").textContent.includes('{"percent":100}')`, 10*time.Second, "the new rollout shows")
	data, err := os.ReadFile(flagsFile)
	require.NoError(t, err)
	assert.Contains(t, strings.Join(strings.Fields(string(data)), ""), `"new-greeting":{"percent":100}`)

	// An upgrade by SIGHUP, seen in progress, then done.
	s.Install("")
	s.Signal(second, syscall.SIGHUP)
	c.waitTrue(`document.getElementById("inprogress").textContent.includes("in progress")`, 15*time.Second, "the upgrade in progress shows")
	if path := os.Getenv(screenshotEnv); path != "" {
		// The stream follows the new generation once it accepts.
		c.waitTrue(`document.getElementById("live").textContent === "live" && document.getElementById("gen").textContent === "generation3"`,
			15*time.Second, "the new generation's view")
		require.NoError(t, os.WriteFile(path, c.screenshot(), 0o644))
		t.Logf("screenshot of the page during an upgrade: %s", path)
	}
	c.waitTrue(generation(3), 30*time.Second, "generation 3")
	c.waitTrue(`document.getElementById("inprogress").textContent === ""`, 15*time.Second, "the upgrade is done")

	var loaded string
	c.eval(`window.loadedOnce`, &loaded)
	assert.Equal(t, "yes", loaded, "the page was never reloaded")
	assert.Empty(t, c.pageErrors(), "errors in the page")
	r := stopLoad()
	t.Log(r.Summary())
	assert.Zero(t, r.Failed(), "requests lost")
	assert.Zero(t, s.Stop(), "exit status of the last generation")
}

// requireTool returns the path of a command, skipping the test without it,
// or failing it when CI is set (.ci/run installs the Debian package pkg).
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (Debian package %s; .ci/run installs it)", name, pkg)
	}
	t.Skipf("%s is not installed (apt-get install %s)", name, pkg)
	return ""
}
