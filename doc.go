// Package handoff is the root of a library for zero-downtime deployments
// inside a Go service.
//
// See the package documentation of upgrader, listener and signal.
package handoff
