package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
)

// Limits of the OCI Distribution spec's grammar (and distribution's).
const (
	maxNameLen = 255
	maxTagLen  = 128
)

// Digest is an OCI content digest. Only sha256 is accepted: the blob store
// is addressed by SHA-256, and every registry in use writes sha256.
type Digest struct {
	Hash blobstore.Hash
}

// String returns "sha256:<hex>".
func (d Digest) String() string { return "sha256:" + d.Hash.String() }

// Ref is the digest as a blob store ref of org, of any size.
func (d Digest) ref(org string) blobstore.Ref {
	return blobstore.Ref{Org: org, Kind: blobstore.KindCAS, Digest: blobstore.Digest{Hash: d.Hash, Size: -1}}
}

// digestOf returns the digest of b.
func digestOf(b []byte) Digest { return Digest{Hash: sha256.Sum256(b)} }

// ParseDigest parses "sha256:<64 lowercase hex digits>". Other algorithms
// are ErrUnsupportedDigest; anything malformed is ErrBadDigest.
func ParseDigest(s string) (Digest, error) {
	alg, hexpart, ok := strings.Cut(s, ":")
	if !ok || alg == "" || hexpart == "" {
		return Digest{}, fmt.Errorf("%w: %q", errBadDigest, clip(s))
	}
	for i := 0; i < len(alg); i++ {
		c := alg[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '+' && c != '.' && c != '_' && c != '-' {
			return Digest{}, fmt.Errorf("%w: %q", errBadDigest, clip(s))
		}
	}
	if alg != "sha256" {
		return Digest{}, fmt.Errorf("%w: %q: only sha256 digests are supported", errUnsupportedDigest, clip(s))
	}
	if len(hexpart) != 64 {
		return Digest{}, fmt.Errorf("%w: %q: want 64 hex digits", errBadDigest, clip(s))
	}
	h, err := blobstore.ParseHash(hexpart)
	if err != nil {
		return Digest{}, fmt.Errorf("%w: %q: lowercase hex", errBadDigest, clip(s))
	}
	return Digest{Hash: h}, nil
}

// Reference is a manifest reference: a tag or a digest.
type Reference struct {
	Tag    string
	Digest Digest // when Tag is empty
}

// IsDigest reports whether r names a manifest by digest.
func (r Reference) IsDigest() bool { return r.Tag == "" }

// String returns the tag or the digest.
func (r Reference) String() string {
	if r.Tag != "" {
		return r.Tag
	}
	return r.Digest.String()
}

// ParseReference parses a tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127}) or a
// digest.
func ParseReference(s string) (Reference, error) {
	if strings.Contains(s, ":") {
		d, err := ParseDigest(s)
		return Reference{Digest: d}, err
	}
	if !ValidTag(s) {
		return Reference{}, fmt.Errorf("%w: %q", errBadTag, clip(s))
	}
	return Reference{Tag: s}, nil
}

// ValidTag reports whether s is a tag.
func ValidTag(s string) bool {
	if s == "" || len(s) > maxTagLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' ||
			i > 0 && (c == '.' || c == '-')
		if !ok {
			return false
		}
	}
	return true
}

// ValidName reports whether s is a repository name of the spec's grammar:
// components of lowercase letters and digits, joined inside by ".", "_",
// "__" or runs of "-", separated by "/"; at most 255 bytes. No component
// can be empty, ".", or "..": a name is never a path trick.
func ValidName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for comp := range strings.SplitSeq(s, "/") {
		if !validComponent(comp) {
			return false
		}
	}
	return true
}

// validComponent: alnum+ (separator alnum+)*, where a separator is ".",
// "_", "__" or a run of "-".
func validComponent(c string) bool {
	i := 0
	for {
		j := i
		for j < len(c) && alnum(c[j]) {
			j++
		}
		if j == i {
			return false
		}
		if j == len(c) {
			return true
		}
		switch c[j] {
		case '.':
			j++
		case '_':
			j++
			if j < len(c) && c[j] == '_' {
				j++
			}
		case '-':
			for j < len(c) && c[j] == '-' {
				j++
			}
		default:
			return false
		}
		i = j
	}
}

func alnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// keyHash is the blob store key of a record named by parts (a tag, a
// repository's tag list): the SHA-256 of the parts, NUL-separated.
func keyHash(parts ...string) blobstore.Hash {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var out blobstore.Hash
	h.Sum(out[:0])
	return out
}

// clip bounds what an error message repeats of client input.
func clip(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// shortHex is a digest's first 12 hex digits, for logs.
func shortHex(h blobstore.Hash) string { return hex.EncodeToString(h[:6]) }
