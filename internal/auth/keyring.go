package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Claims are the contents of a credential the control plane signs for an
// agent or a job.
type Claims struct {
	Kind    Kind     `json:"knd"`
	Subject string   `json:"sub"`
	Org     string   `json:"org"`
	Name    string   `json:"nam,omitempty"`
	Scopes  []string `json:"scp,omitempty"`
	// Fence is the lease a job credential was minted for: the credential
	// is accepted only while its job holds that lease.
	Fence     int64  `json:"fnc,omitempty"`
	Audience  string `json:"aud"`
	IssuedAt  int64  `json:"iat"`
	ExpiresAt int64  `json:"exp"`
	ID        string `json:"jti"`
}

// Audience is the only audience Nimbus's own credentials carry.
const Audience = "nimbus"

const signingAlg = "EdDSA"

// Keyring signs credentials with Ed25519 keys identified by key ids, and
// verifies them with every key still trusted: the active one, and retired
// ones until they expire, so a rotation never breaks credentials already
// handed out. A revoked key stops verifying at once. Private keys are stored
// sealed with the master key.
type Keyring struct {
	keys   store.Keys
	sealer *Sealer
	now    func() time.Time

	mu      sync.RWMutex
	gen     uint64 // grows with every Reload
	active  string
	private map[string]ed25519.PrivateKey
	records map[string]store.SigningKey
}

// OpenKeyring loads the keys from the store, creating the first one if
// there is none.
func OpenKeyring(ctx context.Context, keys store.Keys, sealer *Sealer, now func() time.Time) (*Keyring, error) {
	if now == nil {
		now = time.Now
	}
	k := &Keyring{keys: keys, sealer: sealer, now: now}
	if err := k.Reload(ctx); err != nil {
		return nil, err
	}
	if k.active == "" {
		if _, err := k.Rotate(ctx, 0); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// Reload reads the keys again (another replica may have rotated them).
func (k *Keyring) Reload(ctx context.Context) error {
	list, err := k.keys.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	private := map[string]ed25519.PrivateKey{}
	records := map[string]store.SigningKey{}
	active := ""
	for _, r := range list {
		if r.Algorithm != signingAlg {
			continue
		}
		records[r.ID] = r
		if !r.RevokedAt.IsZero() {
			continue
		}
		seed, err := k.sealer.Open("signing-key/"+r.ID, r.PrivateSealed)
		if err != nil {
			return fmt.Errorf("signing key %s: %w", r.ID, err)
		}
		if len(seed) != ed25519.SeedSize {
			return fmt.Errorf("signing key %s: bad seed", r.ID)
		}
		private[r.ID] = ed25519.NewKeyFromSeed(seed)
		if r.RetiredAt.IsZero() {
			active = r.ID // the newest unretired key signs
		}
	}
	k.mu.Lock()
	k.active, k.private, k.records = active, private, records
	k.gen++
	k.mu.Unlock()
	return nil
}

// Generation changes whenever the keys are loaded again (a rotation, a
// revocation, a Reload): what was verified under an older generation must
// be verified again.
func (k *Keyring) Generation() uint64 {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.gen
}

// Rotate creates a new signing key and makes it the active one. The keys
// it replaces keep verifying for overlap, then expire.
func (k *Keyring) Rotate(ctx context.Context, overlap time.Duration) (string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	now := k.now()
	id := ids.New("key")
	rec := store.SigningKey{
		ID: id, Algorithm: signingAlg, Public: priv.Public().(ed25519.PublicKey),
		PrivateSealed: k.sealer.Seal("signing-key/"+id, priv.Seed()), CreatedAt: now,
	}
	if err := k.keys.CreateSigningKey(ctx, rec); err != nil {
		return "", err
	}
	k.mu.RLock()
	var retire []store.SigningKey
	for _, r := range k.records {
		if r.RetiredAt.IsZero() && r.RevokedAt.IsZero() {
			r.RetiredAt, r.ExpiresAt = now, now.Add(overlap)
			retire = append(retire, r)
		}
	}
	k.mu.RUnlock()
	for _, r := range retire {
		if err := k.keys.UpdateSigningKey(ctx, r); err != nil {
			return "", err
		}
	}
	return id, k.Reload(ctx)
}

// Revoke stops a key from verifying anything, at once. The active key
// cannot be revoked: rotate first.
func (k *Keyring) Revoke(ctx context.Context, id string) error {
	k.mu.RLock()
	r, ok := k.records[id]
	active := k.active
	k.mu.RUnlock()
	if !ok {
		return fmt.Errorf("revoke signing key %s: %w", id, store.ErrNotFound)
	}
	if id == active {
		return fmt.Errorf("revoke signing key %s: it is the active key; rotate first", id)
	}
	r.RevokedAt = k.now()
	if err := k.keys.UpdateSigningKey(ctx, r); err != nil {
		return err
	}
	return k.Reload(ctx)
}

// KeyInfo describes a signing key for listing.
type KeyInfo struct {
	ID        string    `json:"id"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
	RetiredAt time.Time `json:"retired_at,omitzero"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Keys lists the signing keys, oldest first.
func (k *Keyring) Keys() []KeyInfo {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var out []KeyInfo
	for _, r := range k.records {
		out = append(out, KeyInfo{ID: r.ID, Active: r.ID == k.active, CreatedAt: r.CreatedAt, RetiredAt: r.RetiredAt, ExpiresAt: r.ExpiresAt, RevokedAt: r.RevokedAt})
	}
	slices.SortFunc(out, func(a, b KeyInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

var b64 = base64.RawURLEncoding.Strict()

// Sign issues a credential for c, valid for ttl from now.
func (k *Keyring) Sign(c Claims, ttl time.Duration) (string, error) {
	k.mu.RLock()
	kid := k.active
	priv := k.private[kid]
	k.mu.RUnlock()
	if priv == nil {
		return "", errors.New("sign: no active signing key")
	}
	now := k.now()
	c.Audience, c.IssuedAt, c.ExpiresAt = Audience, now.Unix(), now.Add(ttl).Unix()
	if c.ID == "" {
		c.ID = ids.New("cred")
	}
	h, _ := json.Marshal(jwtHeader{Alg: signingAlg, Kid: kid, Typ: "JWT"})
	p, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	signed := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	return signed + "." + b64.EncodeToString(ed25519.Sign(priv, []byte(signed))), nil
}

// maxCredentialLen bounds what Verify parses.
const maxCredentialLen = 4096

// Verify checks a credential's signature, key, audience and expiry and
// returns its claims. Every failure wraps ErrUnauthenticated.
func (k *Keyring) Verify(token string) (Claims, error) {
	c, _, err := k.verify(token)
	return c, err
}

// verify is Verify, also returning when the key that signed the token
// stops verifying (zero: not before it is retired).
func (k *Keyring) verify(token string) (Claims, time.Time, error) {
	var c Claims
	if len(token) > maxCredentialLen {
		return c, time.Time{}, fmt.Errorf("%w: credential too long", ErrUnauthenticated)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return c, time.Time{}, fmt.Errorf("%w: malformed credential", ErrUnauthenticated)
	}
	hb, err1 := b64.DecodeString(parts[0])
	pb, err2 := b64.DecodeString(parts[1])
	sig, err3 := b64.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return c, time.Time{}, fmt.Errorf("%w: malformed credential", ErrUnauthenticated)
	}
	var h jwtHeader
	if err := json.Unmarshal(hb, &h); err != nil || h.Alg != signingAlg {
		return c, time.Time{}, fmt.Errorf("%w: unsupported credential header", ErrUnauthenticated)
	}
	k.mu.RLock()
	priv, ok := k.private[h.Kid]
	rec := k.records[h.Kid]
	k.mu.RUnlock()
	if !ok {
		return c, time.Time{}, fmt.Errorf("%w: unknown or revoked signing key", ErrUnauthenticated)
	}
	now := k.now()
	if !rec.RetiredAt.IsZero() && !now.Before(rec.ExpiresAt) {
		return c, time.Time{}, fmt.Errorf("%w: signing key expired", ErrUnauthenticated)
	}
	if !ed25519.Verify(priv.Public().(ed25519.PublicKey), []byte(parts[0]+"."+parts[1]), sig) {
		return c, time.Time{}, fmt.Errorf("%w: bad signature", ErrUnauthenticated)
	}
	if err := json.Unmarshal(pb, &c); err != nil {
		return c, time.Time{}, fmt.Errorf("%w: malformed claims", ErrUnauthenticated)
	}
	if c.Audience != Audience {
		return c, time.Time{}, fmt.Errorf("%w: wrong audience", ErrUnauthenticated)
	}
	if now.Unix() >= c.ExpiresAt {
		return c, time.Time{}, fmt.Errorf("%w: credential expired", ErrUnauthenticated)
	}
	if c.Kind != KindAgent && c.Kind != KindJob {
		return c, time.Time{}, fmt.Errorf("%w: unknown credential kind", ErrUnauthenticated)
	}
	if !rec.RetiredAt.IsZero() {
		return c, rec.ExpiresAt, nil
	}
	return c, time.Time{}, nil
}
