package handoff_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"path"
	"strings"
	"testing"
)

const module = "github.com/handoff-go/handoff"

// rules says, for each package of the module (by path relative to the
// module, "*" matching one trailing element or more), which non-standard
// imports it may have: other packages of the module (relative paths) and
// third-party module prefixes. "std" is always allowed except where a rule
// says "nostd".
//
// These are the arrows of DESIGN.md; a change that needs a new arrow changes
// this table and ARCHITECTURE.md together.
var rules = []struct {
	pkg   string
	allow []string
}{
	{".", []string{"listener", "upgrader", "signal", "health"}},
	{"listener", []string{"internal/*"}},
	{"upgrader/upgradertest/grpcload", []string{"upgrader/upgradertest", "google.golang.org/grpc", "google.golang.org/protobuf"}},
	{"upgrader/upgradertest", []string{"upgrader", "golang.org/x/net"}},
	{"upgrader", []string{"listener", "internal/*", "github.com/cloudflare/tableflip", "golang.org/x/sys"}},
	{"signal", nil},
	// gRPC's health service is driven through a two-method interface, so
	// that health, and the root package that imports it, link no gRPC.
	{"health", nil},
	{"reload", []string{"github.com/fsnotify/fsnotify"}},
	{"bundle", []string{"reload"}},
	{"plugin", []string{"reload", "github.com/hashicorp/go-plugin", "github.com/hashicorp/go-hclog", "google.golang.org/grpc", "google.golang.org/protobuf", "golang.org/x/sys"}},
	{"plugin/internal/*", []string{"plugin", "github.com/hashicorp/go-plugin", "github.com/hashicorp/go-hclog", "google.golang.org/grpc", "google.golang.org/protobuf"}},
	{"flags", []string{"reload"}},
	{"flags/flagsyaml", []string{"go.yaml.in/yaml/v3"}},
	{"flags/flagstest", []string{"flags", "reload"}},
	{"flags/ofprovider", []string{"flags", "github.com/open-feature/go-sdk"}},
	{"flags/flagcheck", []string{"flags", "golang.org/x/tools"}},
	{"flags/cmd/*", []string{"flags", "flags/flagcheck", "flags/flagsyaml", "golang.org/x/tools"}},
	{"metrics", []string{"listener", "upgrader", "signal", "reload", "bundle", "plugin", "flags", "github.com/prometheus/client_golang"}},
	{"admin", []string{"listener", "upgrader", "signal", "reload", "bundle", "plugin", "flags", "metrics"}},
	// The cluster harness: the standard library (its own API client), x/sys
	// for setns and flock; the Kubernetes modules live in its build module.
	{"internal/k8stest", []string{"golang.org/x/sys"}},
	{"internal/*", []string{"internal/*", "golang.org/x/sys", "github.com/coreos/go-systemd/v22"}},
	{"examples/*", []string{".", "examples/*", "health", "listener", "upgrader", "upgrader/upgradertest", "upgrader/upgradertest/grpcload", "signal", "reload", "bundle", "plugin", "flags", "metrics", "admin",
		"github.com/hashicorp/go-plugin", "google.golang.org/grpc", "google.golang.org/protobuf"}},
	// The CI gate: the load generator, and /proc, sock_diag and pidfds
	// for the server's processes; none of the library's runtime packages.
	{"cmd/handoff-check", []string{"upgrader/upgradertest", "internal/proc", "golang.org/x/sys"}},
	{"bench/*", []string{".", "bench/*", "upgrader/upgradertest", "listener", "upgrader", "signal", "internal/*", "github.com/cloudflare/tableflip", "golang.org/x/sys"}},
}

func ruleFor(rel string) ([]string, bool) {
	for _, r := range rules {
		if r.pkg == rel || strings.HasSuffix(r.pkg, "/*") && strings.HasPrefix(rel, strings.TrimSuffix(r.pkg, "*")) {
			return r.allow, true
		}
	}
	return nil, false
}

func allowed(allow []string, imp string) bool {
	for _, a := range allow {
		full := a
		if a == "." {
			full = module // the root package
			if imp == full {
				return true
			}
			continue
		}
		if !strings.Contains(strings.Split(a, "/")[0], ".") {
			full = module + "/" + a
		}
		if strings.HasSuffix(full, "/*") {
			if strings.HasPrefix(imp, strings.TrimSuffix(full, "*")) {
				return true
			}
			continue
		}
		if imp == full || strings.HasPrefix(imp, full+"/") {
			return true
		}
	}
	return false
}

// TestDependencies holds the import rules of DESIGN.md: each package imports
// only what its row allows, internal/ never imports a public package, and
// examples/ never import internal/.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	seen := 0
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		pkg, imports := f[0], f[1:]
		rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
		if rel == "" {
			rel = "."
		}
		allow, ok := ruleFor(rel)
		if !ok {
			t.Errorf("package %s has no row in the import rules", pkg)
			continue
		}
		seen++
		nostd := len(allow) > 0 && allow[0] == "nostd"
		for _, imp := range imports {
			std := !strings.Contains(strings.Split(imp, "/")[0], ".")
			switch {
			case std && !nostd:
			case std && nostd:
				t.Errorf("%s imports %s; it is documentation only", rel, imp)
			case !allowed(allow, imp):
				t.Errorf("%s imports %s, which its row does not allow (%v)", rel, imp, allow)
			}
		}
		if strings.HasPrefix(rel, "examples/") {
			for _, imp := range imports {
				if strings.HasPrefix(imp, module+"/internal/") {
					t.Errorf("%s imports %s: examples use public packages only", rel, imp)
				}
			}
		}
		if strings.HasPrefix(rel, "internal/") { // the module's own internal/, not plugin/internal/
			for _, imp := range imports {
				if strings.HasPrefix(imp, module+"/") && !strings.HasPrefix(imp, module+"/internal/") {
					t.Errorf("%s imports public package %s", rel, path.Base(imp))
				}
			}
		}
	}
	if seen < 4 {
		t.Fatalf("go list found only %d packages", seen)
	}
}
