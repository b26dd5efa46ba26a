// Package e2e tests remote Bazel end to end with the real Bazel client and
// server (Debian's bazel-bootstrap), real bubblewrap and a real network
// namespace: the agent runs as a separate process in its own namespace and
// storage, the proxy is started by the Bazel client as <javabase>/bin/java,
// and the real session broker (internal/sessions over SQLite) behind the
// real sessions HTTP API (over TLS) is the control plane, driving the
// agent from its orders (sessionstest). The test binary plays the proxy
// and the agent when re-executed with NIMBUS_RBS_E2E_ROLE set.
package e2e
