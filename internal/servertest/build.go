package servertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Builds are the variants of one server package, built once per test
// binary (in TestMain) into a private temporary directory.
type Builds struct {
	dir string
}

// Build builds pkg once per variant: "" is the normal build, any other
// variant is built with the -ldflags that ldflags gives for it. With race
// set the binaries are built with -race. Remove the directory with Remove.
func Build(pkg string, race bool, variants ...string) (*Builds, error) {
	dir, err := os.MkdirTemp("", "handoff-servertest-")
	if err != nil {
		return nil, err
	}
	b := &Builds{dir: dir}
	var wg sync.WaitGroup
	errs := make([]error, len(variants))
	for i, v := range variants {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"build", "-o", b.Path(v)}
			if race {
				args = append(args, "-race")
			}
			if v != "" {
				args = append(args, "-ldflags", ldflags(v))
			}
			args = append(args, pkg)
			out, err := exec.Command("go", args...).CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Remove()
			return nil, err
		}
	}
	return b, nil
}

// ldflags sets what variant v names: its parts, separated by "+", are
// "legacy-accept" (upgrader's control protocol without accept-on-healthy and
// the welcome file, as an older release spoke it) or a break mode of the
// server (main.breakMode).
func ldflags(v string) string {
	var flags []string
	for part := range strings.SplitSeq(v, "+") {
		if part == "legacy-accept" {
			flags = append(flags, "-X github.com/handoff-go/handoff/upgrader.legacyProtocol=accept")
			continue
		}
		flags = append(flags, "-X main.breakMode="+part)
	}
	return strings.Join(flags, " ")
}

// Path is where variant v was built.
func (b *Builds) Path(v string) string {
	if v == "" {
		v = "good"
	}
	return filepath.Join(b.dir, "server-"+v)
}

// Remove deletes the binaries.
func (b *Builds) Remove() { _ = os.RemoveAll(b.dir) }
