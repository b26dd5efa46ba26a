// Package rbs is remote Bazel: a developer's own bazel command runs on an
// agent. This package holds what the parts share: the SessionProvider
// contract between the proxy and whoever finds it a remote server (the
// control plane), and the javabase directory that points the Bazel client
// at the proxy.
//
// Sub-packages: proxy (the process the Bazel client starts as
// <javabase>/bin/java), server (the agent side: a sandboxed, supervised real
// Bazel server per session and the tunnel the proxy talks to), srcsync
// (workspace sync), outputs (bringing outputs back), session (the control
// plane's HTTP API for sessions), serverdir (Bazel's handshake files),
// protocol (wire definitions) and bench (nimbus bench rbs).
package rbs
