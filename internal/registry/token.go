package registry

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/auth"
)

// TokenPrefix starts every registry token, so the edge tells one from a
// Nimbus API token or job credential (and a secret scanner knows it).
const TokenPrefix = "nmbr_"

// tokenAudience is the only audience registry tokens carry.
const tokenAudience = "nimbus-registry"

// maxTokenLen bounds what the edge parses.
const maxTokenLen = 16 << 10

// TokenClaims are what a registry token says: who asked (enough of the
// Nimbus principal to describe it in logs and errors) and the access the
// token endpoint granted, per repository.
type TokenClaims struct {
	Org       string    `json:"org"`
	Kind      auth.Kind `json:"knd"`
	Subject   string    `json:"sub"`
	Role      auth.Role `json:"rol,omitempty"`
	Access    []Scope   `json:"acc,omitempty"`
	Audience  string    `json:"aud"`
	IssuedAt  int64     `json:"iat"`
	ExpiresAt int64     `json:"exp"`
}

// Allows reports whether the claims grant action on the repository name.
func (c TokenClaims) Allows(name, action string) bool {
	for _, s := range c.Access {
		if s.Name == name {
			return slices.Contains(s.Actions, action)
		}
	}
	return false
}

// Covers reports whether the claims grant anything on name.
func (c TokenClaims) Covers(name string) bool {
	for _, s := range c.Access {
		if s.Name == name {
			return len(s.Actions) > 0
		}
	}
	return false
}

// tokenSigner signs and verifies registry tokens with an HMAC-SHA256 key
// that every replica shares (a sealed secret), so a token issued by one
// replica works on all. Tokens live minutes: revoking the Nimbus
// credential stops new ones at once, and those issued expire soon after.
type tokenSigner struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

var tokenB64 = base64.RawURLEncoding.Strict()

// Sign returns a token for c, valid for ttl from now (at most the
// signer's TTL; 0: the signer's TTL).
func (s *tokenSigner) Sign(c TokenClaims, ttl time.Duration) (string, time.Time, error) {
	if ttl <= 0 || ttl > s.ttl {
		ttl = s.ttl
	}
	now := s.now()
	c.Audience, c.IssuedAt = tokenAudience, now.Unix()
	exp := now.Add(ttl)
	c.ExpiresAt = exp.Unix()
	b, err := json.Marshal(c)
	if err != nil {
		return "", time.Time{}, err
	}
	payload := tokenB64.EncodeToString(b)
	return TokenPrefix + payload + "." + tokenB64.EncodeToString(s.mac(payload)), exp, nil
}

func (s *tokenSigner) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(TokenPrefix))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// Verify checks a token's MAC, audience and expiry. Every failure wraps
// auth.ErrUnauthenticated.
func (s *tokenSigner) Verify(tok string) (TokenClaims, error) {
	var c TokenClaims
	if len(tok) > maxTokenLen {
		return c, fmt.Errorf("%w: registry token too long", auth.ErrUnauthenticated)
	}
	rest, ok := strings.CutPrefix(tok, TokenPrefix)
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return c, fmt.Errorf("%w: malformed registry token", auth.ErrUnauthenticated)
	}
	got, err := tokenB64.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(payload)) {
		return c, fmt.Errorf("%w: bad registry token signature", auth.ErrUnauthenticated)
	}
	b, err := tokenB64.DecodeString(payload)
	if err != nil {
		return c, fmt.Errorf("%w: malformed registry token", auth.ErrUnauthenticated)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%w: malformed registry token claims", auth.ErrUnauthenticated)
	}
	if c.Audience != tokenAudience || c.Org == "" {
		return c, fmt.Errorf("%w: registry token for another audience", auth.ErrUnauthenticated)
	}
	if s.now().Unix() >= c.ExpiresAt {
		return c, fmt.Errorf("%w: registry token expired", auth.ErrUnauthenticated)
	}
	return c, nil
}
