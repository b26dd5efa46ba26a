package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/nimbus-build/nimbus/internal/store"
)

// Authenticator turns a bearer credential into a Principal: API tokens by
// their hash, agent and job credentials by signature. Revocation is checked
// on every call (API tokens, disabled agents), so it takes effect at once.
// A job credential is accepted only while its job holds the live lease the
// credential was minted for (same fence, no cancel requested).
//
// Answers are kept in memory (credentialCache): an API token is looked up
// at most once a second per replica, so its revocation takes effect within
// a second everywhere; a signature is verified once per credential while
// the keyring's keys are unchanged.
type Authenticator struct {
	store  store.Store
	ring   *Keyring
	now    func() time.Time
	leases *jobLeases
	cache  *credentialCache
	loads  singleflight.Group
}

// NewAuthenticator builds an Authenticator.
func NewAuthenticator(st store.Store, ring *Keyring, now func() time.Time) *Authenticator {
	if now == nil {
		now = time.Now
	}
	return &Authenticator{store: st, ring: ring, now: now, cache: newCredentialCache(),
		leases: &jobLeases{jobs: st.Jobs().Get, now: now, m: map[string]*leaseAnswer{}}}
}

// WatchJobs makes the job lease check reuse its answers until the job's
// notify topic (topic(id)) fires on wait's notifier, and for at most a
// second. Without it every job credential costs a database read.
func (a *Authenticator) WatchJobs(wait func(topic string) <-chan struct{}, topic func(id string) string) {
	a.leases.mu.Lock()
	a.leases.watch = func(id string) <-chan struct{} { return wait(topic(id)) }
	a.leases.mu.Unlock()
}

// Authenticate implements the cache's and the API's Authenticator.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (Principal, error) {
	switch {
	case token == "":
		return Principal{}, fmt.Errorf("%w: no credential", ErrUnauthenticated)
	case strings.HasPrefix(token, APITokenPrefix):
		return a.apiToken(ctx, token)
	case strings.HasPrefix(token, "ey"): // a signed credential (JWT)
		return a.signed(ctx, token)
	}
	return Principal{}, fmt.Errorf("%w: unrecognised credential", ErrUnauthenticated)
}

func (a *Authenticator) apiToken(ctx context.Context, token string) (Principal, error) {
	if len(token) > 128 {
		return Principal{}, fmt.Errorf("%w: token too long", ErrUnauthenticated)
	}
	key := sha256.Sum256([]byte(token))
	if p, ok := a.cache.token(key, a.now()); ok {
		return p, nil
	}
	// Concurrent requests of one token share one read.
	v, err, _ := a.loads.Do(string(key[:]), func() (any, error) { return a.loadAPIToken(context.WithoutCancel(ctx), key) })
	if err != nil {
		return Principal{}, err
	}
	return v.(Principal), nil
}

func (a *Authenticator) loadAPIToken(ctx context.Context, key [sha256.Size]byte) (Principal, error) {
	t, err := a.store.Tokens().APITokenByHash(ctx, key[:])
	if errors.Is(err, store.ErrNotFound) {
		a.cache.dropToken(key)
		return Principal{}, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
	}
	if err != nil {
		return Principal{}, err
	}
	now := a.now()
	if !t.RevokedAt.IsZero() {
		a.cache.dropToken(key)
		return Principal{}, fmt.Errorf("%w: token revoked", ErrUnauthenticated)
	}
	if !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt) {
		a.cache.dropToken(key)
		return Principal{}, fmt.Errorf("%w: token expired", ErrUnauthenticated)
	}
	p := Principal{Kind: KindUser, Org: t.OrgID, ID: t.ID, Name: t.Name, Role: Role(t.Role)}
	a.cache.putToken(key, tokenAnswer{p: p, expires: t.ExpiresAt, at: now})
	return p, nil
}

// verify checks a signed credential's signature once per credential and
// keyring generation.
func (a *Authenticator) verify(token string) (Claims, error) {
	if len(token) > maxCredentialLen {
		return Claims{}, fmt.Errorf("%w: credential too long", ErrUnauthenticated)
	}
	key := sha256.Sum256([]byte(token))
	gen := a.ring.Generation()
	if c, ok := a.cache.verified(key, gen, a.now()); ok {
		return c, nil
	}
	c, until, err := a.ring.verify(token)
	if err != nil {
		return c, err
	}
	a.cache.putClaims(key, claimsAnswer{c: c, gen: gen, until: until})
	return c, nil
}

func (a *Authenticator) signed(ctx context.Context, token string) (Principal, error) {
	c, err := a.verify(token)
	if err != nil {
		return Principal{}, err
	}
	p := Principal{Kind: c.Kind, Org: c.Org, ID: c.Subject, Name: c.Name, Scopes: c.Scopes}
	if c.Kind == KindJob {
		if err := a.leases.check(ctx, c.Subject, c.Org, c.Fence); err != nil {
			return Principal{}, err
		}
	}
	if c.Kind == KindAgent {
		ag, err := a.agent(ctx, c)
		if err != nil {
			return Principal{}, err
		}
		p.Name = ag.Name
	}
	return p, nil
}

// Agent authenticates an agent credential and returns the agent's record,
// read once for both.
func (a *Authenticator) Agent(ctx context.Context, token string) (Principal, store.Agent, error) {
	if !strings.HasPrefix(token, "ey") {
		return Principal{}, store.Agent{}, fmt.Errorf("%w: not an agent credential", ErrUnauthenticated)
	}
	c, err := a.ring.Verify(token)
	if err != nil {
		return Principal{}, store.Agent{}, err
	}
	if c.Kind != KindAgent {
		return Principal{}, store.Agent{}, fmt.Errorf("%w: not an agent credential", ErrUnauthenticated)
	}
	ag, err := a.agent(ctx, c)
	if err != nil {
		return Principal{}, store.Agent{}, err
	}
	return Principal{Kind: KindAgent, Org: ag.OrgID, ID: ag.ID, Name: ag.Name}, ag, nil
}

// agent checks that the agent a credential names exists, is enabled and
// belongs to the credential's org: disabling an agent revokes it at once.
func (a *Authenticator) agent(ctx context.Context, c Claims) (store.Agent, error) {
	ag, err := a.store.Agents().Get(ctx, c.Subject)
	if errors.Is(err, store.ErrNotFound) {
		return ag, fmt.Errorf("%w: unknown agent", ErrUnauthenticated)
	}
	if err != nil {
		return ag, err
	}
	if !ag.DisabledAt.IsZero() {
		return ag, fmt.Errorf("%w: agent disabled", ErrUnauthenticated)
	}
	if ag.OrgID != c.Org {
		return ag, fmt.Errorf("%w: agent org mismatch", ErrUnauthenticated)
	}
	return ag, nil
}
