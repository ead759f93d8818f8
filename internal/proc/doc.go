// Package proc reads what the project needs of Linux's /proc: a process's
// parent, its children, and the processes a deploy tool left in a cgroup.
// Outside Linux every function returns ErrNotSupported.
package proc
