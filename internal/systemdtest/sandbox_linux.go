//go:build linux

package systemdtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrUnavailable: namespaces, mounts or systemd are not available here.
var ErrUnavailable = errors.New("systemdtest: cannot boot systemd in namespaces here")

// Defaults for Options.
const (
	DefaultLifetime    = 5 * time.Minute
	DefaultBootTimeout = 60 * time.Second
	systemdPath        = "/lib/systemd/systemd"
	bootTarget         = "handoff-systemdtest.target"
	prefix             = "handoff-systemdtest."
)

// Options configure Boot. The zero value means all defaults.
type Options struct {
	// Lifetime is the hard limit of the sandbox: its PID 1 is killed then,
	// whatever the test does. Default DefaultLifetime.
	Lifetime time.Duration
	// BootTimeout bounds the boot. Default DefaultBootTimeout.
	BootTimeout time.Duration
}

// Sandbox is a running systemd in its namespaces. Methods are safe for
// concurrent use.
type Sandbox struct {
	// PID1 is the host pid of the sandbox's PID 1 (systemd).
	PID1 int

	dir, cgroup string
	cmd         *exec.Cmd
	done        chan struct{}
	kill        *time.Timer
	closeOnce   sync.Once
	closeErr    error
}

// The namespace init: PID 1 of new pid/mount/uts/ipc namespaces. It joins
// its private cgroup, enters a new cgroup namespace rooted there, builds the
// root and execs systemd.
const initScript = `#!/bin/sh
set -eu
stage=$1 W=$2
export LIBMOUNT_UTAB="$W/utab"   # never the host's /run/mount/utab
if [ "$stage" = 1 ]; then
	mount --make-rprivate /
	echo 0 > "$3/cgroup.procs"
	exec unshare --cgroup /bin/sh "$0" 2 "$W" "$4"
fi
DROP=$3 R=$W/root
mount -t tmpfs -o mode=755 handoff-upper "$W/ovl"
mkdir -p "$W/ovl/upper" "$W/ovl/work"
mount -t overlay handoff-root -o "lowerdir=/,upperdir=$W/ovl/upper,workdir=$W/ovl/work" "$R"
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
for p in sys sysrq-trigger; do
	[ -e "$R/proc/$p" ] || continue
	mount --bind "$R/proc/$p" "$R/proc/$p"
	mount -o remount,bind,ro "$R/proc/$p"
done
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup"
mount -t tmpfs -o mode=755,nosuid handoff-dev "$R/dev"
mknod -m 666 "$R/dev/null" c 1 3
mknod -m 666 "$R/dev/zero" c 1 5
mknod -m 666 "$R/dev/full" c 1 7
mknod -m 666 "$R/dev/random" c 1 8
mknod -m 666 "$R/dev/urandom" c 1 9
mknod -m 666 "$R/dev/tty" c 5 0
mkdir "$R/dev/pts" "$R/dev/shm" "$R/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
touch "$R/dev/console"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$R/run"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
mkdir -p "$R/etc/systemd/system"
cp "$W/` + bootTarget + `" "$R/etc/systemd/system/"
cd "$R"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot
exec env -i container=handoff-systemdtest PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	setpriv --bounding-set -sys_module,-sys_time,-sys_rawio,-syslog,-wake_alarm,-block_suspend,-mac_admin,-mac_override$DROP \
	` + systemdPath + ` --unit=` + bootTarget + ` --log-target=journal --show-status=no
`

const bootTargetUnit = `[Unit]
Description=handoff systemdtest boot target (journald only)
DefaultDependencies=no
Wants=systemd-journald.socket systemd-journald.service
After=systemd-journald.socket systemd-journald.service
`

// Available reports why a sandbox cannot be booted here (an error wrapping
// ErrUnavailable), or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root (namespaces, mounts and cgroups need it)", ErrUnavailable)
	}
	for _, b := range []string{"unshare", "nsenter", "setpriv", "mount", "mknod", "pivot_root", "umount"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%w: %s not found", ErrUnavailable, b)
		}
	}
	if _, err := os.Stat(systemdPath); err != nil {
		return fmt.Errorf("%w: no systemd at %s", ErrUnavailable, systemdPath)
	}
	fss, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for _, f := range []string{"overlay", "cgroup2"} {
		if !bytes.Contains(fss, []byte("\t"+f+"\n")) {
			return fmt.Errorf("%w: no %s file system", ErrUnavailable, f)
		}
	}
	if _, err := cgroupDir(); err != nil {
		return err
	}
	return nil
}

// cgroupDir returns this process's cgroup2 directory.
func cgroupDir() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer f.Close()
	mnt := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, x := range fields {
			if x == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" {
				mnt = fields[4]
			}
		}
		if mnt != "" {
			break
		}
	}
	if mnt == "" {
		return "", fmt.Errorf("%w: no cgroup2 hierarchy mounted", ErrUnavailable)
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join(mnt, rest), nil
		}
	}
	return "", fmt.Errorf("%w: not in a cgroup2 hierarchy", ErrUnavailable)
}

// Boot starts a sandbox and waits, bounded by ctx and Options.BootTimeout,
// until systemd has finished booting. The caller must Close it.
func Boot(ctx context.Context, opts Options) (*Sandbox, error) {
	if opts.Lifetime <= 0 {
		opts.Lifetime = DefaultLifetime
	}
	if opts.BootTimeout <= 0 {
		opts.BootTimeout = DefaultBootTimeout
	}
	if err := Available(); err != nil {
		return nil, err
	}
	parentCG, _ := cgroupDir()
	sweep(os.TempDir(), parentCG)

	dir, err := os.MkdirTemp("", prefix+strconv.Itoa(os.Getpid())+".")
	if err != nil {
		return nil, err
	}
	s := &Sandbox{dir: dir, cgroup: filepath.Join(parentCG, filepath.Base(dir)), done: make(chan struct{})}
	fail := func(err error) (*Sandbox, error) {
		s.Close()
		return nil, err
	}
	for _, d := range []string{"root", "ovl"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return fail(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "init.sh"), []byte(initScript), 0o755); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(dir, bootTarget), []byte(bootTargetUnit), 0o644); err != nil {
		return fail(err)
	}
	if err := os.Mkdir(s.cgroup, 0o755); err != nil {
		return fail(fmt.Errorf("%w: create cgroup: %w", ErrUnavailable, err))
	}
	console, err := os.Create(filepath.Join(dir, "console.log"))
	if err != nil {
		return fail(err)
	}
	defer console.Close()
	// The host's network is shared: nothing inside may administer it.
	s.cmd = exec.Command("/bin/sh", filepath.Join(dir, "init.sh"), "1", dir, s.cgroup, ",-net_admin")
	s.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	s.cmd.Stdout, s.cmd.Stderr = console, console
	s.cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
		Setsid:     true,
		// The sandbox dies with this process, even if it is killed.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := s.cmd.Start(); err != nil {
		return fail(fmt.Errorf("%w: start namespace init: %w", ErrUnavailable, err))
	}
	s.PID1 = s.cmd.Process.Pid
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	s.kill = time.AfterFunc(opts.Lifetime, func() { _ = s.cmd.Process.Kill() })

	bctx, cancel := context.WithTimeout(ctx, opts.BootTimeout)
	defer cancel()
	if err := s.waitBoot(bctx); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "console.log"))
		return fail(fmt.Errorf("systemdtest: boot: %w\nconsole:\n%s", err, log))
	}
	return s, nil
}

// waitBoot waits until systemd runs as PID 1 and says the boot is over.
func (s *Sandbox) waitBoot(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last := "systemd not started"
	for {
		// Until systemd has exec'd there is no bus to ask; there is no
		// event to wait for either, so look at the process.
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", s.PID1)); err == nil && string(comm) == "systemd\n" {
			out, err := s.Run(ctx, "systemctl", "is-system-running", "--wait")
			last = strings.TrimSpace(string(out))
			if err != nil {
				last = err.Error()
			}
			switch st := strings.TrimSpace(string(out)); st {
			case "running", "degraded":
				return nil
			}
			// "offline": the manager does not answer yet; anything else
			// ("starting", "initializing") is a boot in progress.
		}
		select {
		case <-s.done:
			return fmt.Errorf("PID 1 exited (%s)", last)
		case <-ctx.Done():
			return fmt.Errorf("%w (%s)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// Run runs a command inside the sandbox (its mount and pid namespaces) and
// returns its combined output. ctx bounds it.
func (s *Sandbox) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	all := append([]string{"-t", strconv.Itoa(s.PID1), "-m", "-p", "--", name}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", all...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"}
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Systemctl runs systemctl inside the sandbox.
func (s *Sandbox) Systemctl(ctx context.Context, args ...string) (string, error) {
	out, err := s.Run(ctx, "systemctl", append([]string{"--no-pager"}, args...)...)
	return string(out), err
}

// Show returns properties of unit (systemctl show -p).
func (s *Sandbox) Show(ctx context.Context, unit string, props ...string) (map[string]string, error) {
	out, err := s.Systemctl(ctx, "show", "-p", strings.Join(props, ","), unit)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m, nil
}

// Journal returns the journal of unit, with monotonic timestamps.
func (s *Sandbox) Journal(ctx context.Context, unit string) string {
	out, err := s.Run(ctx, "journalctl", "--no-pager", "-o", "short-monotonic", "-u", unit)
	if err != nil {
		return string(out) + "\n" + err.Error()
	}
	return string(out)
}

// Path returns the host path of path inside the sandbox.
func (s *Sandbox) Path(path string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", s.PID1), path)
}

// WriteFile writes a file inside the sandbox the way a deploy does: a new
// file beside it, renamed into place. Parent directories are created.
func (s *Sandbox) WriteFile(path string, data []byte, perm fs.FileMode) error {
	p := s.Path(path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".new"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// Close shuts systemd down (systemctl exit), kills PID 1 if it does not
// exit in time, which ends every process of the sandbox, and removes the
// cgroup and the work directory. Idempotent; it returns the first error.
func (s *Sandbox) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Sandbox) close() error {
	if s.cmd != nil && s.cmd.Process != nil {
		select {
		case <-s.done:
		default:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, _ = s.Run(ctx, "systemctl", "exit", "0")
			select {
			case <-s.done:
			case <-ctx.Done():
				_ = s.cmd.Process.Kill()
				<-s.done
			}
			cancel()
		}
		s.kill.Stop()
	}
	var errs []error
	if s.cgroup != "" {
		if err := removeCgroup(s.cgroup); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeWorkDir(s.dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeWorkDir removes a work directory, unless something is mounted on
// it as the host sees it (the root overlay has the host's / below it):
// the mounts live in the sandbox's mount namespace only, and it is gone.
func removeWorkDir(dir string) error {
	var top syscall.Stat_t
	if err := syscall.Stat(dir, &top); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return nil
		}
		return err
	}
	for _, sub := range []string{"root", "ovl"} {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join(dir, sub), &st); err == nil && st.Dev != top.Dev {
			return fmt.Errorf("systemdtest: %s is a mount point on the host; not removing %s", filepath.Join(dir, sub), dir)
		}
	}
	return os.RemoveAll(dir)
}

// removeCgroup removes a cgroup tree, deepest first. Empty cgroups can be
// removed with rmdir even though they hold control files.
func removeCgroup(dir string) error {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var last error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
			last = fmt.Errorf("systemdtest: remove cgroup %s: %w", dirs[i], err)
		}
	}
	return last
}

// sweep removes the work directories and cgroups of earlier runs whose
// process is gone.
func sweep(tmp, parentCG string) {
	for _, base := range []string{tmp, parentCG} {
		ents, _ := os.ReadDir(base)
		for _, e := range ents {
			rest, ok := strings.CutPrefix(e.Name(), prefix)
			if !ok || !e.IsDir() {
				continue
			}
			pidStr, _, _ := strings.Cut(rest, ".")
			pid, err := strconv.Atoi(pidStr)
			if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
				continue
			}
			p := filepath.Join(base, e.Name())
			if base == parentCG {
				_ = removeCgroup(p)
			} else {
				_ = removeWorkDir(p)
			}
		}
	}
}
