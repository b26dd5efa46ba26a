package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"strings"
)

// Prefixes of the bearer secrets Nimbus issues. A prefix tells a reader
// (and a secret scanner) what a leaked string is.
const (
	APITokenPrefix  = "nmbu_"
	JoinTokenPrefix = "nmbj_"
)

var secretEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewSecret returns a new random bearer secret with the prefix (160 bits)
// and the hash to store in its place.
func NewSecret(prefix string) (secret string, hash []byte) {
	b := make([]byte, 20)
	rand.Read(b)
	secret = prefix + strings.ToLower(secretEncoding.EncodeToString(b))
	return secret, HashSecret(secret)
}

// HashSecret is how a bearer secret is stored and looked up. The secrets
// are random, so a fast hash is enough: there is nothing to brute-force.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}
