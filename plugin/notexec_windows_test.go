package plugin

import "syscall"

// errNotExecutable is what exec of a file that is no executable fails with:
// ERROR_BAD_EXE_FORMAT.
var errNotExecutable error = syscall.Errno(193)
