// Package blobstore defines the content-addressed blob store behind every
// protocol of the build cache (Bazel REAPI and HTTP cache, the GitHub Actions
// cache), and the decorators that add cross-cutting behaviour around it:
// metrics, verification of refs and written content (Verifying, the one
// place those are checked: backends check nothing of it) and read-through
// tiers. internal/cache composes them once, in cache.New.
//
// Every call names the org it acts for (Ref.Org). A backend must answer
// existence per org: an org only ever learns about blobs it wrote itself,
// even where the bytes are deduplicated in storage.
package blobstore
