//go:build nogrpc

package main

import (
	"errors"

	"github.com/handoff-go/handoff"
)

// grpcServer: built with -tags nogrpc (the benchmark does, so that its
// server links what its baselines link), the server has no gRPC.
func grpcServer(addr string) (handoff.Server, error) {
	return handoff.Server{}, errors.New("built with -tags nogrpc")
}
