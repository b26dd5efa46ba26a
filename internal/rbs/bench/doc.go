// Package bench is `nimbus bench rbs`: it runs the same workspace with a
// local Bazel and through remote Bazel (the product in this process: a
// control plane with its session broker on SQLite and an agent offering
// remote Bazel, the real proxy started by the real Bazel client) and
// prints, side by side, a cold start, a warm no-op build and a
// one-file-changed rebuild, plus the source sync of one changed file over
// the real mTLS tunnel.
package bench
