package plugin

import (
	"os/exec"
	"runtime"
	"syscall"
)

// setParentDeath asks the kernel to SIGKILL the plugin when the thread that
// forked it ends, which with the spawner means when the host process dies,
// even by SIGKILL. os/exec's SysProcAttr is a syscall type, so syscall is
// used here rather than x/sys/unix.
func setParentDeath(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}

func lockThread() { runtime.LockOSThread() }
