// Package systemdtest boots a throw-away systemd, the machine's own, as PID
// 1 of fresh pid, mount, cgroup, uts and ipc namespaces, so that tests can
// install units, drive them with systemctl and read the journal, on a
// machine whose own PID 1 is not systemd.
//
// The sandbox's root is an overlay of the host's / with a tmpfs on top
// (writes vanish), with its own /proc (/proc/sys read-only), a read-only
// /sys, a cgroup2 mount rooted (cgroup namespace) at a private sub-cgroup of
// the caller's, and tmpfs /dev, /run and /tmp. The network namespace is the
// host's, so a test reaches a unit's sockets on 127.0.0.1; systemd runs
// without CAP_NET_ADMIN, CAP_SYS_MODULE, CAP_SYS_TIME and a few more in its
// bounding set, so nothing it starts can reconfigure the shared kernel.
// systemctl and journalctl run through nsenter; files go in through
// /proc/<pid1>/root.
//
// Boot returns an error wrapping ErrUnavailable where this cannot be done
// (not root, no unshare/nsenter/setpriv, no overlayfs or cgroup2, no
// systemd); tests skip on it. A sandbox has a hard lifetime after which its
// PID 1 is killed, which ends every process in it; it also dies with the
// process that booted it (parent-death signal). Close tears it down and is
// idempotent. Leftovers of runs that were killed (work directories, empty
// cgroups) are swept by the next Boot.
//
// Linux only.
package systemdtest
