// Package upgradertest puts a load on a server while it upgrades and counts
// what the server did to every request: the project uses it in its tests,
// the demo and the benchmarks. Its clients never retry, so every request
// that a server refuses, resets or drops is counted: Go's http.Transport
// would silently retry some of them, and grpc-go retries some too.
//
// Worker kinds (Kind):
//
//   - HTTP/1.1, raw over net.Conn: keep-alive clients that check whether
//     the server closed an idle connection before they reuse it (as curl
//     does) and ones that reuse it blindly; clients that open a new
//     connection per request; slow requests; long streamed responses that
//     must end with a "done" line.
//   - HTTP/2, raw on golang.org/x/net/http2's Framer: concurrent streams on
//     one connection over TLS (H2TLS) or h2c with prior knowledge (H2C),
//     and connections that sit idle between bursts (H2Idle). A stream the
//     server refused unprocessed (REFUSED_STREAM, or an id above a GOAWAY's
//     last stream id) is counted apart as Unprocessed, which is not a
//     failure; a connection that ends without a GOAWAY under an open
//     stream, or that fails when reused, is a failure (NoGoAway).
//     Result.H2 counts the connections that got a GOAWAY and those that
//     ended without one.
//   - gRPC (GRPCUnary, GRPCStream): their clients are in package
//     grpcload, which fills in Config.Clients, so that a program that
//     imports this package for Handler does not link gRPC.
//
// Every worker is rate-limited and stops when its context ends; Run returns
// one Result for all of them. A keep-alive worker that has to dial again
// marks its request Sample.Reconnect (Result.Reconnects counts them): the
// cost a server's restart puts on its clients even when nothing fails. Start runs it in the background until its
// stop function is called; MixedConfig is the project's acceptance mix,
// and Result.Summary and Result.Check say, for a log and for a test, what
// a load did and whether it lost anything.
//
// The server under load answers as Handler does: GET /pid with its pid,
// GET /slow?ms=N after N ms with a body containing "pid <pid>", and GET
// /stream?s=N with lines for N seconds ending in a line "done". A server
// that does not can be loaded with requests of its own (Config.Requests,
// SlowRequest, StreamRequest: a method, a path, header fields, a body),
// whose responses are OK when their status is 2xx and their body arrived
// whole. WriteCert
// makes a certificate for a TLS server on the loopback addresses, and a
// pool for the clients to trust it.
package upgradertest
