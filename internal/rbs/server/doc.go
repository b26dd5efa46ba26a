// Package server is the agent side of remote Bazel. A Host, run by the
// agent process, starts sessions: for each, a real Bazel server inside
// bubblewrap as an unprivileged uid, with the developer's workspace and
// output base bound at the developer's own absolute paths and all storage
// confined to <storage-root>/<org>/<user>/<repo-hash>/; a Supervisor that
// restarts it when it crashes and stops it when the session ends; and the
// mTLS Tunnel the session's proxy uses (Run, Cancel, source sync, outputs),
// which only the session's user may call.
package server
