package blobstore

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
)

// HashSize is the length of a SHA-256 hash in bytes.
const HashSize = sha256.Size

// Hash is a SHA-256 hash.
type Hash [HashSize]byte

// String returns the lowercase hex form of h.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Digest names a blob by its SHA-256 hash and its size in bytes.
type Digest struct {
	Hash Hash
	Size int64
}

// EmptyDigest is the digest of the empty blob, which always exists.
var EmptyDigest = Digest{Hash: sha256.Sum256(nil), Size: 0}

// IsEmpty reports whether d is the digest of the empty blob (a negative
// size, "any size", counts).
func (d Digest) IsEmpty() bool { return d.Hash == EmptyDigest.Hash && d.Size <= 0 }

// String returns "hash/size".
func (d Digest) String() string { return d.Hash.String() + "/" + strconv.FormatInt(d.Size, 10) }

// DigestOf returns the digest of b.
func DigestOf(b []byte) Digest { return Digest{Hash: sha256.Sum256(b), Size: int64(len(b))} }

// ParseHash parses 64 lowercase hex digits. Upper case is refused so that a
// hash has exactly one spelling.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*HashSize {
		return h, fmt.Errorf("%w: hash %q: want %d hex digits", ErrInvalid, truncate(s), 2*HashSize)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return h, fmt.Errorf("%w: hash %q: not lowercase hex", ErrInvalid, truncate(s))
		}
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("%w: hash %q: %v", ErrInvalid, truncate(s), err)
	}
	return h, nil
}

// NewDigest builds a digest from a hex hash and a size, validating both.
func NewDigest(hash string, size int64) (Digest, error) {
	h, err := ParseHash(hash)
	if err != nil {
		return Digest{}, err
	}
	if size < 0 {
		return Digest{}, fmt.Errorf("%w: negative size %d", ErrInvalid, size)
	}
	return Digest{Hash: h, Size: size}, nil
}

// ParseSize parses a blob size in decimal: digits only, no sign, no leading
// zeros (except "0"), at most 2^63-1.
func ParseSize(s string) (int64, error) {
	if s == "" || len(s) > 19 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("%w: size %q", ErrInvalid, truncate(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: size %q", ErrInvalid, truncate(s))
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: size %q", ErrInvalid, truncate(s))
	}
	return n, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
