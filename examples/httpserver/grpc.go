//go:build !benchmin

package main

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/handoff-go/handoff"
	"github.com/handoff-go/handoff/upgrader/upgradertest/grpcload"
)

// grpcServer serves the load generator's gRPC test service and the standard
// health service on addr.
func grpcServer(addr string) (handoff.Server, error) {
	gs := grpc.NewServer()
	grpcload.Register(gs)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	return handoff.GRPC(gs, addr), nil
}
