//go:build linux

package k8stest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The binaries of a cluster, by the name they have in the cache. etcd's
// main package is go.etcd.io/etcd/server/v3, which go build names
// "server".
var binaries = map[string]string{
	"etcd":                    "go.etcd.io/etcd/server/v3",
	"kube-apiserver":          "k8s.io/kubernetes/cmd/kube-apiserver",
	"kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
	"kube-scheduler":          "k8s.io/kubernetes/cmd/kube-scheduler",
	"kubelet":                 "k8s.io/kubernetes/cmd/kubelet",
	"kube-proxy":              "k8s.io/kubernetes/cmd/kube-proxy",
	"pause":                   "github.com/handoff-go/handoff/internal/k8stest/build/pause",
}

// buildModule returns the directory of the build module (build/ beside
// this file): the tests run from source, so the path compiled into this
// file is there.
func buildModule() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("k8stest: cannot find the package's source directory")
	}
	dir := filepath.Join(filepath.Dir(file), "build")
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		return "", fmt.Errorf("k8stest: the build module is not at %s (built with -trimpath?): %w", dir, err)
	}
	return dir, nil
}

// cacheRoot is the directory the package owns in the user's cache:
// the built binaries, one directory bin-<version>-<key> per build.
func cacheRoot() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("k8stest: %w", err)
	}
	dir := filepath.Join(base, "handoff-k8stest")
	return dir, os.MkdirAll(dir, 0o755)
}

// moduleVersion returns the version the build module requires of mod.
func moduleVersion(gomod []byte, mod string) string {
	sc := bufio.NewScanner(strings.NewReader(string(gomod)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == mod && !strings.Contains(sc.Text(), "=>") {
			return f[1]
		}
		if len(f) >= 3 && f[0] == "require" && f[1] == mod {
			return f[2]
		}
	}
	return ""
}

// buildPlan is a build of the cluster's binaries: where it goes in the
// cache, and how to make it.
type buildPlan struct {
	src, dir, ldflags string
	kubernetes, etcd  string // versions
}

// plan names the cache entry of the binaries the build module makes: one
// per Kubernetes version and hash of the sources (go.mod, go.sum, pause),
// the Go version and the flags.
func plan(ctx context.Context, cache string) (buildPlan, error) {
	src, err := buildModule()
	if err != nil {
		return buildPlan{}, err
	}
	gomod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		return buildPlan{}, err
	}
	p := buildPlan{src: src, kubernetes: moduleVersion(gomod, "k8s.io/kubernetes"), etcd: moduleVersion(gomod, "go.etcd.io/etcd/server/v3")}
	if p.kubernetes == "" {
		return p, fmt.Errorf("k8stest: %s requires no k8s.io/kubernetes", filepath.Join(src, "go.mod"))
	}
	goVersion, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return p, fmt.Errorf("k8stest: go env GOVERSION: %w", err)
	}
	major, minor, _ := strings.Cut(strings.TrimPrefix(p.kubernetes, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	p.ldflags = "-s -w"
	for _, v := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		p.ldflags += fmt.Sprintf(" -X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitTreeState=clean", v, p.kubernetes, v, major, v, minor, v)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", strings.TrimSpace(string(goVersion)), runtime.GOARCH, p.ldflags)
	for _, f := range []string{"go.mod", "go.sum", "pause/main.go"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return p, err
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	p.dir = filepath.Join(cache, "bin-"+p.kubernetes+"-"+hex.EncodeToString(h.Sum(nil))[:16])
	return p, nil
}

// binariesCached says the cluster's binaries are in the cache.
func binariesCached() bool {
	cache, err := cacheRoot()
	if err != nil {
		return false
	}
	p, err := plan(context.Background(), cache)
	return err == nil && complete(p.dir)
}

// buildBinaries returns the directory of the cluster's binaries, built
// from the build module unless they are in the cache. A build goes to a
// temporary directory renamed into place, so an interrupted build leaves
// no half cache entry; older entries are removed after a build. The caller
// holds the machine lock, so two builds never race.
func buildBinaries(ctx context.Context, cache string, logf func(string, ...any)) (dir string, cached bool, err error) {
	p, err := plan(ctx, cache)
	if err != nil {
		return "", false, err
	}
	dir = p.dir
	if complete(dir) {
		return dir, true, nil
	}

	tmp := dir + ".tmp-" + strconv.Itoa(os.Getpid())
	_ = os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", false, err
	}
	defer os.RemoveAll(tmp)
	pkgs := make([]string, 0, len(binaries))
	for _, pkg := range binaries {
		pkgs = append(pkgs, pkg)
	}
	start := time.Now()
	logf("k8stest: building Kubernetes %s and etcd %s into %s (%s)", p.kubernetes, p.etcd, dir, ColdBuild)
	args := append([]string{"build", "-trimpath", "-ldflags", p.ldflags, "-o", tmp + "/"}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = p.src
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	cmd.WaitDelay = 10 * time.Second
	// A killed test does not leave a long build running. The
	// signal comes when the thread that started the child ends: this one
	// is locked until the build is over, so it cannot end before.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread()
	out, err := cmd.CombinedOutput()
	runtime.UnlockOSThread()
	if err != nil {
		return "", false, fmt.Errorf("k8stest: go build of the cluster: %w\n%s", err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "server"), filepath.Join(tmp, "etcd")); err != nil {
		return "", false, err
	}
	if !complete(tmp) {
		return "", false, fmt.Errorf("k8stest: go build left an incomplete set of binaries in %s", tmp)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", false, err
	}
	logf("k8stest: built the cluster's binaries in %s", time.Since(start).Round(time.Second))
	old, _ := filepath.Glob(filepath.Join(cache, "bin-*"))
	for _, o := range old {
		if o != dir {
			_ = os.RemoveAll(o)
		}
	}
	return dir, false, nil
}

// complete says dir holds every binary.
func complete(dir string) bool {
	for name := range binaries {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}
