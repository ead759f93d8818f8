//go:build linux

package admin_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// chromium drives headless Chromium (Debian's chromium) over the DevTools
// protocol on a pipe (--remote-debugging-pipe: JSON messages ended by a
// NUL byte, commands on fd 3, answers and events on fd 4): no port, no
// WebSocket, no dependency. One page, one session.
type chromium struct {
	t       testing.TB
	cmd     *exec.Cmd
	w       *os.File // fd 3 of Chromium
	done    chan struct{}
	session string

	mu      sync.Mutex
	nextID  int
	waiting map[int]chan cdpReply
	errs    []string // console errors and exceptions of the page
}

type cdpReply struct {
	Result json.RawMessage
	Error  *struct{ Message string }
}

// chromiumFlags are what headless Chromium needs on these machines: no
// sandbox as root, no GPU, and none of its background connections (the
// network is closed).
var chromiumFlags = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-extensions", "--disable-default-apps", "--mute-audio", "--hide-scrollbars"}

// startChromium starts Chromium with a fresh profile in the test's
// temporary directory and opens one page of width x height; the test's
// cleanup ends it.
func startChromium(t *testing.T, bin string, width, height int) *chromium {
	t.Helper()
	toChrome, ourW, err := os.Pipe()
	require.NoError(t, err)
	ourR, fromChrome, err := os.Pipe()
	require.NoError(t, err)
	args := append(append([]string(nil), chromiumFlags...), "--user-data-dir="+t.TempDir(), "--remote-debugging-pipe",
		fmt.Sprintf("--window-size=%d,%d", width, height), "about:blank")
	cmd := exec.Command(bin, args...)
	cmd.ExtraFiles = []*os.File{toChrome, fromChrome} // fds 3 and 4
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	require.NoError(t, cmd.Start())
	toChrome.Close()
	fromChrome.Close()
	c := &chromium{t: t, cmd: cmd, w: ourW, done: make(chan struct{}), waiting: map[int]chan cdpReply{}}
	readerDone := make(chan struct{})
	go func() { defer close(readerDone); c.read(ourR) }()
	go func() { _ = cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		ourW.Close() // Chromium exits when its pipe closes
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
		// Its helper processes share its process group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-readerDone
		ourR.Close()
		if t.Failed() {
			t.Logf("chromium's stderr:\n%s", stderr.String())
		}
	})

	var target struct{ TargetID string }
	c.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var att struct{ SessionID string }
	c.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att)
	c.session = att.SessionID
	c.do("Page.enable", nil)
	c.do("Runtime.enable", nil)
	c.do("Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false})
	return c
}

// read dispatches Chromium's messages until its pipe ends.
func (c *chromium) read(r *os.File) {
	br := bufio.NewReader(r)
	for {
		msg, err := br.ReadBytes(0)
		if err != nil {
			c.mu.Lock()
			for id, ch := range c.waiting {
				close(ch)
				delete(c.waiting, id)
			}
			c.mu.Unlock()
			return
		}
		var m struct {
			ID     int
			Method string
			Params json.RawMessage
			cdpReply
		}
		if json.Unmarshal(msg[:len(msg)-1], &m) != nil {
			continue
		}
		c.mu.Lock()
		switch {
		case m.ID != 0:
			if ch := c.waiting[m.ID]; ch != nil {
				ch <- m.cdpReply
				delete(c.waiting, m.ID)
			}
		case m.Method == "Runtime.exceptionThrown":
			c.errs = append(c.errs, string(m.Params))
		case m.Method == "Runtime.consoleAPICalled" && bytes.Contains(m.Params, []byte(`"type":"error"`)):
			c.errs = append(c.errs, string(m.Params))
		}
		c.mu.Unlock()
	}
}

// call sends a command (to the page's session, or to the browser when
// session is "") and decodes its result into out; it fails the test on an
// error or after 30 s.
func (c *chromium) call(session, method string, params, out any) {
	c.t.Helper()
	if err := c.try(session, method, params, out); err != nil {
		c.t.Fatalf("%s: %v", method, err)
	}
}

func (c *chromium) try(session, method string, params, out any) error {
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	ch := make(chan cdpReply, 1)
	c.waiting[id] = ch
	c.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := c.w.Write(append(b, 0)); err != nil {
		return err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return errors.New("chromium exited")
		}
		if r.Error != nil {
			return errors.New(r.Error.Message)
		}
		if out != nil {
			return json.Unmarshal(r.Result, out)
		}
		return nil
	case <-time.After(30 * time.Second):
		return errors.New("no answer within 30s")
	}
}

func (c *chromium) do(method string, params any) {
	c.t.Helper()
	c.call(c.session, method, params, nil)
}

// navigate loads url and waits for the page's load event (bounded).
func (c *chromium) navigate(url string) {
	c.t.Helper()
	c.do("Page.navigate", map[string]any{"url": url})
	c.waitTrue(`document.readyState === "complete"`, 15*time.Second, "the page loads")
}

// eval evaluates a JavaScript expression in the page and decodes its
// value into out.
func (c *chromium) eval(expr string, out any) {
	c.t.Helper()
	var r struct {
		Result           struct{ Value json.RawMessage }
		ExceptionDetails *struct{ Text string }
	}
	c.call(c.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &r)
	if r.ExceptionDetails != nil {
		c.t.Fatalf("evaluating %s: %s", expr, r.ExceptionDetails.Text)
	}
	if out != nil && len(r.Result.Value) > 0 {
		require.NoError(c.t, json.Unmarshal(r.Result.Value, out), "%s", r.Result.Value)
	}
}

func (c *chromium) text(selector string) string {
	c.t.Helper()
	var s string
	c.eval(fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, selector), &s)
	return s
}

// waitTrue polls a JavaScript condition until it holds (bounded).
func (c *chromium) waitTrue(expr string, within time.Duration, what string) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var ok bool
		c.eval("!!("+expr+")", &ok)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: %s not true within %s; page text:\n%s", what, expr, within, c.text("body"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// click clicks the middle of the element selector matches, with the
// mouse, as a user does.
func (c *chromium) click(selector string) {
	c.t.Helper()
	var xy []float64
	c.eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return null;
		e.scrollIntoView({block: "center"}); const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()`, selector), &xy)
	require.Len(c.t, xy, 2, "no element %s", selector)
	for _, typ := range []string{"mouseMoved", "mousePressed", "mouseReleased"} {
		p := map[string]any{"type": typ, "x": xy[0], "y": xy[1]}
		if typ != "mouseMoved" {
			p["button"], p["clickCount"] = "left", 1
		}
		c.do("Input.dispatchMouseEvent", p)
	}
}

// typeInto clicks an input and types text into it.
func (c *chromium) typeInto(selector, text string) {
	c.t.Helper()
	c.click(selector)
	c.eval(fmt.Sprintf(`document.querySelector(%q).select()`, selector), nil)
	c.do("Input.insertText", map[string]any{"text": text})
}

// screenshot returns a PNG of the page as the viewport shows it.
func (c *chromium) screenshot() []byte {
	c.t.Helper()
	var r struct{ Data string }
	c.call(c.session, "Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": false}, &r)
	b, err := base64.StdEncoding.DecodeString(r.Data)
	require.NoError(c.t, err)
	return b
}

func (c *chromium) pageErrors() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errs...)
}
