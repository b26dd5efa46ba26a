// Package srcsync keeps an agent's copy of a developer's workspace up to
// date without shared storage. It is content addressed and incremental:
//
//   - The proxy's Scanner walks the workspace (skipping .bazelignore'd
//     directories and the bazel-* convenience symlinks), hashing only files
//     whose stat data changed since the last scan (a stat cache persisted in
//     the output base), so an unchanged 10,000-file tree costs a walk.
//   - The proxy's Client diffs the scan against what it last synced to the
//     session and sends only the change, tagged with the agent's version of
//     the tree; the agent asks for the contents it lacks by digest.
//   - The agent's Tree applies changes inside the session's storage through
//     os.Root, so no path or symlink in a manifest can reach outside it, and
//     answers "send everything" when versions disagree (a new session, an
//     agent restart), rescanning its own copy so a full sync still moves only
//     what differs.
package srcsync
