// Package proxy is the process the Bazel client starts as
// <javabase>/bin/java when the workspace's .bazelrc points
// --server_javabase at a Nimbus javabase. It stands in for the Bazel
// server: it binds loopback and writes every handshake file at once, never
// changes directory, and terminates the CommandServer protocol itself
// (local cookies checked, command ids mapped, output streamed with gRPC's
// flow control, Cancel forwarded, exec requests of bazel run honoured,
// shutdown obeyed). On the first command it asks its SessionProvider for a
// remote server, printing progress on the client's stderr; before each
// command it syncs the workspace, and after build, test and run it brings
// the top-level outputs back.
package proxy
