package auth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// credentialMaxAge bounds how long what an API token stands for is reused
// without asking the database: a revocation (or any other change to the
// token) takes effect within it on every replica, with no message between
// them. Expiry is exact: the cached answer carries the token's expiry.
const credentialMaxAge = time.Second

// maxCachedCredentials bounds the answers kept; past it the cache starts
// over (only a cost: the next request of each credential reads again).
const maxCachedCredentials = 1 << 16

// credentialCache keeps the answers of credential checks by the SHA-256
// of the credential (never the secret itself), so that the hot path (the
// build cache's requests) costs a map lookup: API tokens for under
// credentialMaxAge, verified signatures of agent and job credentials while
// the keyring's keys are unchanged and the credential has not expired.
// Only successes are kept: a flood of made-up credentials fills nothing.
type credentialCache struct {
	mu     sync.RWMutex
	tokens map[[sha256.Size]byte]tokenAnswer
	claims map[[sha256.Size]byte]claimsAnswer
}

type tokenAnswer struct {
	p       Principal
	expires time.Time // the token's own expiry; zero: none
	at      time.Time
}

type claimsAnswer struct {
	c     Claims
	gen   uint64    // the keyring's generation when verified
	until time.Time // when the signing key stops verifying; zero: not known to
}

func newCredentialCache() *credentialCache {
	return &credentialCache{tokens: map[[sha256.Size]byte]tokenAnswer{}, claims: map[[sha256.Size]byte]claimsAnswer{}}
}

// token returns the principal of an API token answered less than
// credentialMaxAge ago and not expired.
func (c *credentialCache) token(key [sha256.Size]byte, now time.Time) (Principal, bool) {
	c.mu.RLock()
	a, ok := c.tokens[key]
	c.mu.RUnlock()
	if !ok || now.Before(a.at) || now.Sub(a.at) >= credentialMaxAge || (!a.expires.IsZero() && !now.Before(a.expires)) {
		return Principal{}, false
	}
	return a.p, true
}

func (c *credentialCache) putToken(key [sha256.Size]byte, a tokenAnswer) {
	c.mu.Lock()
	if len(c.tokens) >= maxCachedCredentials {
		clear(c.tokens)
	}
	c.tokens[key] = a
	c.mu.Unlock()
}

func (c *credentialCache) dropToken(key [sha256.Size]byte) {
	c.mu.Lock()
	delete(c.tokens, key)
	c.mu.Unlock()
}

// verified returns the claims of a signed credential verified under the
// keyring's generation gen and not expired at now.
func (c *credentialCache) verified(key [sha256.Size]byte, gen uint64, now time.Time) (Claims, bool) {
	c.mu.RLock()
	a, ok := c.claims[key]
	c.mu.RUnlock()
	if !ok || a.gen != gen || now.Unix() >= a.c.ExpiresAt || (!a.until.IsZero() && !now.Before(a.until)) {
		return Claims{}, false
	}
	return a.c, true
}

func (c *credentialCache) putClaims(key [sha256.Size]byte, a claimsAnswer) {
	c.mu.Lock()
	if len(c.claims) >= maxCachedCredentials {
		clear(c.claims)
	}
	c.claims[key] = a
	c.mu.Unlock()
}
