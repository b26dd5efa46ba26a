// Package disk is the local-disk blob store of the build cache.
//
// Layout under the root directory (no client string ever becomes a path:
// every name is a hex hash this package computed or validated):
//
//	orgs/<h>/org                 the org's id, h = first 32 hex digits of sha256(org)
//	orgs/<h>/{cas,ac,meta}/xx/<hash>
//	orgs/<h>/cas/xx/<hash>.zst   a CAS blob stored compressed (zstdfile.go)
//	tmp/                         writes in progress
//	index                        snapshot of the in-memory index
//
// A CAS blob held by several orgs is one inode with one hard link per org,
// so storage is deduplicated while existence stays per org, and the
// filesystem frees the bytes when the last org's link goes.
//
// CAS blobs that compress are stored compressed with zstd (unless
// Options.NoCompression): served as they are to clients that read zstd,
// decoded and checked against their digest for the others. Sizes, quotas
// and eviction count the bytes stored.
//
// Writes go to a temporary file, are verified (size, and SHA-256 for the
// CAS), renamed into place and made durable by a group commit (one syncfs(2)
// for all the writes that finished meanwhile) before they are acknowledged.
//
// The index (about 73 bytes an entry) is loaded from its snapshot at start,
// so the store serves at once; a background walk then reconciles it with the
// files, and until it has finished every answer is checked against the
// filesystem. Each org has an LRU list; eviction never removes an entry used
// within the minimum retention age, keeps each org under its quota (evicting
// inside the org first, then refusing with blobstore.ErrQuotaExceeded) and
// keeps the whole store under its size limit.
package disk
