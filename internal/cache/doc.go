// Package cache is Nimbus's build cache: one tenant-safe blob store served
// to Bazel (gRPC Remote Execution API v2 and the HTTP cache), to the GitHub
// Actions cache client (v1 REST and v2 Twirp protocols) and to Nimbus jobs.
//
// Service is what the control plane mounts: NewGRPCServer for the REAPI
// services, Handler for the HTTP routes, Close to stop the background work.
// Both serve exactly the route table of routes.go, behind one edge
// (package access) that authenticates every request and authorizes the
// action its route declares before any handler runs.
// JobEnv gives a job the environment that points actions/cache and Bazel at
// this cache.
package cache
