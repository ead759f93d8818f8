// Command handoff-check upgrades a server under load and fails if a
// request is lost: zero downtime as a CI gate.
package main
