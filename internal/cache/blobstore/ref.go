package blobstore

import "fmt"

// Kind says which namespace a blob lives in.
type Kind uint8

const (
	// KindCAS is the content-addressed store: the blob's digest is the
	// SHA-256 of its bytes, and writes are verified against it.
	KindCAS Kind = iota + 1
	// KindAC is the action cache: the key is an action's digest, the value
	// any bytes (an encoded ActionResult), private to the org.
	KindAC
	// KindMeta holds small per-org records keyed by a hash the caller
	// computes (the Actions cache's entries, for example).
	KindMeta
)

// Kinds lists every kind.
var Kinds = []Kind{KindCAS, KindAC, KindMeta}

// String returns a short lowercase name, usable as a metric label.
func (k Kind) String() string {
	switch k {
	case KindCAS:
		return "cas"
	case KindAC:
		return "ac"
	case KindMeta:
		return "meta"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool { return k >= KindCAS && k <= KindMeta }

// Ref names one blob of one org.
type Ref struct {
	Org  string
	Kind Kind
	// Digest is the content's digest for KindCAS (a negative Size in Get
	// and FindMissing means "any size": the Bazel HTTP cache names blobs by
	// hash alone); for KindAC and KindMeta only Digest.Hash is the key.
	Digest Digest
}

// String returns a form suitable for error messages.
func (r Ref) String() string { return r.Kind.String() + "/" + r.Digest.String() }
