//go:build unix

package plugin

import "syscall"

// errNotExecutable is what exec of a file that is no executable fails with.
var errNotExecutable error = syscall.ENOEXEC
