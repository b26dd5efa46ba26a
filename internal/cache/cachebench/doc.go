// Package cachebench is `nimbus bench cache`: a load generator for remote
// build caches. It speaks the REAPI gRPC protocol and Bazel's HTTP cache
// protocol, so it can be pointed at any cache server (Nimbus, bazel-remote,
// …) and the results compared side by side. Without --target it starts an
// in-process Nimbus cache on loopback and measures that.
package cachebench
