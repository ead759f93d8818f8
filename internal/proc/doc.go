// Package proc reads what the project needs of Linux's /proc: a process's
// parent, its children and descendants, its fds and memory, the kernel's
// TCP socket tables, and the processes a deploy tool left in a cgroup; and
// it waits for a process's exit on a pidfd (ExitWatch). Outside Linux every
// function returns ErrNotSupported (or nothing).
package proc
