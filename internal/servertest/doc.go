// Package servertest runs real server processes for the project's
// process-level tests: it builds a server package in several variants
// (deliberately broken binaries among them), starts one from a private path,
// installs new builds there by rename as a deploy does, signals its
// generations, reads their JSON log records, waits for their exits (the test
// process must be a child subreaper, see MakeSubreaper), and lists the
// processes, children and fds they leave.
//
// It is used by the tests of the root package, upgrader and
// internal/systemdtest; it is not for production code.
package servertest
