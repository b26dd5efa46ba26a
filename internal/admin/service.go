// Package admin is how an installation is administered: orgs and their
// API tokens (the people and CI systems acting in them), the signing keys
// and the GitHub webhook secrets. Every change is made together with its
// audit entry (internal/audit); the API's handlers only decode, call and
// encode.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/policy"
	"github.com/nimbus-build/nimbus/internal/secrets"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Options are the Service's dependencies.
type Options struct {
	Store   store.Store
	Policy  *policy.Engine
	Keyring *auth.Keyring
	Secrets *secrets.Store
	// KeyOverlap is how long a rotated signing key keeps verifying: the
	// longest life of a credential it signed.
	KeyOverlap time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

// Service administers the installation. It is safe for concurrent use.
type Service struct {
	o     Options
	audit *audit.Log
}

// New builds a Service.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.KeyOverlap <= 0 {
		o.KeyOverlap = 24 * time.Hour
	}
	return &Service{o: o, audit: audit.New(o.Store, o.Now, o.Logger)}
}

// Token is an API token just created, with its secret (shown once).
type Token struct {
	store.APIToken
	Secret string
}

// CreateToken creates an API token of p's org. p may only create tokens of
// its own role or a weaker one (the policy decides: tokens.create).
func (s *Service) CreateToken(ctx context.Context, p auth.Principal, name, role string, ttl time.Duration) (Token, error) {
	if !auth.Role(role).Valid() {
		return Token{}, fmt.Errorf("%w: role %q is not one of viewer, developer, ci, admin, owner", auth.ErrForbidden, role)
	}
	if err := s.o.Policy.Authorize(ctx, p, "tokens.create", policy.Resource{Org: p.Org, Role: role}); err != nil {
		return Token{}, err
	}
	var t Token
	err := s.audit.Do(ctx, func(tx *audit.Tx) error {
		var err error
		t, err = s.issueToken(ctx, tx, p.Org, name, role, ttl, audit.Actor(p))
		return err
	})
	return t, err
}

// issueToken creates an API token in tx, audited as created by actor.
func (s *Service) issueToken(ctx context.Context, tx *audit.Tx, org, name, role string, ttl time.Duration, actor string) (Token, error) {
	secret, hash := auth.NewSecret(auth.APITokenPrefix)
	now := s.o.Now()
	t := store.APIToken{ID: ids.New("tok"), OrgID: org, Name: name, Role: role, Hash: hash, CreatedBy: actor, CreatedAt: now}
	if ttl > 0 {
		t.ExpiresAt = now.Add(ttl)
	}
	if err := tx.Tokens().CreateAPIToken(ctx, t); err != nil {
		return Token{}, err
	}
	tx.Audit(store.AuditEntry{At: now, OrgID: org, Actor: actor, Action: "token.created", Target: t.ID,
		Detail: map[string]string{"name": name, "role": role}})
	return Token{APIToken: t, Secret: secret}, nil
}

// ListTokens lists an org's API tokens.
func (s *Service) ListTokens(ctx context.Context, org string) ([]store.APIToken, error) {
	return s.o.Store.Tokens().ListAPITokens(ctx, org)
}

// ErrLastOwner refuses to revoke the last live owner token of an org:
// nobody could then act as its owner (`nimbus admin recover-owner` on the
// server's host is the way back).
var ErrLastOwner = errors.New("the last owner token of an org cannot be revoked: create another owner token first")

// RevokeToken revokes an API token of p's org, at once. p may only revoke
// tokens of its own role or a weaker one (tokens.revoke), and never the
// org's last live owner token (ErrLastOwner). store.ErrNotFound for a
// token of another org.
func (s *Service) RevokeToken(ctx context.Context, p auth.Principal, id string) (store.APIToken, error) {
	now := s.o.Now()
	var out store.APIToken
	err := s.audit.Do(ctx, func(tx *audit.Tx) error {
		// One change to the org's tokens at a time: two owners revoking
		// each other at once must not leave none.
		if err := tx.Orgs().Lock(ctx, p.Org); err != nil {
			return err
		}
		list, err := tx.Tokens().ListAPITokens(ctx, p.Org)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(list, func(t store.APIToken) bool { return t.ID == id })
		if i < 0 {
			return fmt.Errorf("token %s: %w", id, store.ErrNotFound)
		}
		t := list[i]
		if err := s.o.Policy.Authorize(ctx, p, "tokens.revoke", policy.Resource{Org: p.Org, Role: t.Role}); err != nil {
			return fmt.Errorf("revoke a token of role %s: %w", t.Role, err)
		}
		if t.Role == string(auth.RoleOwner) && live(t, now) && liveOwners(list, now) == 1 {
			return ErrLastOwner
		}
		if err := tx.Tokens().RevokeAPIToken(ctx, p.Org, id, now); err != nil {
			return err
		}
		tx.Audit(store.AuditEntry{At: now, OrgID: p.Org, Actor: audit.Actor(p), Action: "token.revoked", Target: id,
			Detail: map[string]string{"role": t.Role}})
		out, err = tokenOf(ctx, tx.Repos, p.Org, id)
		return err
	})
	return out, err
}

func live(t store.APIToken, now time.Time) bool {
	return t.RevokedAt.IsZero() && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
}

func liveOwners(list []store.APIToken, now time.Time) int {
	n := 0
	for _, t := range list {
		if t.Role == string(auth.RoleOwner) && live(t, now) {
			n++
		}
	}
	return n
}

// RecoverOwner makes a new owner token for the org named org, for the
// operator of the server's host who was locked out (`nimbus admin
// recover-owner`): it is audited as owner.recovered, by actor.
func (s *Service) RecoverOwner(ctx context.Context, org, name, actor string, ttl time.Duration) (Token, error) {
	var t Token
	err := s.audit.Do(ctx, func(tx *audit.Tx) error {
		o, err := tx.Orgs().GetByName(ctx, org)
		if err != nil {
			return fmt.Errorf("org %q: %w", org, err)
		}
		if err := tx.Orgs().Lock(ctx, o.ID); err != nil {
			return err
		}
		if t, err = s.issueToken(ctx, tx, o.ID, name, string(auth.RoleOwner), ttl, actor); err != nil {
			return err
		}
		tx.Audit(store.AuditEntry{OrgID: o.ID, Actor: actor, Action: "owner.recovered", Target: t.ID,
			Detail: map[string]string{"name": name, "org": org}})
		return nil
	})
	return t, err
}

// tokenOf finds an API token of org.
func tokenOf(ctx context.Context, r store.Repos, org, id string) (store.APIToken, error) {
	list, err := r.Tokens().ListAPITokens(ctx, org)
	if err != nil {
		return store.APIToken{}, err
	}
	for _, t := range list {
		if t.ID == id {
			return t, nil
		}
	}
	return store.APIToken{}, store.ErrNotFound
}

// ListOrgs lists every org of the installation.
func (s *Service) ListOrgs(ctx context.Context) ([]store.Org, error) {
	return s.o.Store.Orgs().List(ctx)
}

// NewOrg is an org just created and the admin token made for it.
type NewOrg struct {
	Org   store.Org
	Admin Token
}

// CreateOrg creates an org, optionally linked to a GitHub account
// (ghID and ghLogin together), and an admin token for it.
func (s *Service) CreateOrg(ctx context.Context, p auth.Principal, name string, ghID int64, ghLogin string) (NewOrg, error) {
	now := s.o.Now()
	o := store.Org{ID: ids.New("org"), Name: name, GitHubOwnerID: ghID, GitHubLogin: ghLogin, CreatedAt: now}
	var out NewOrg
	err := s.audit.Do(ctx, func(tx *audit.Tx) error {
		if err := tx.Orgs().Create(ctx, o); err != nil {
			return err
		}
		tx.Audit(store.AuditEntry{At: now, OrgID: o.ID, Actor: audit.Actor(p), Action: "org.created", Target: o.ID,
			Detail: map[string]string{"name": o.Name, "by_org": p.Org}})
		tok, err := s.issueToken(ctx, tx, o.ID, "admin", string(auth.RoleAdmin), 0, audit.Actor(p))
		out = NewOrg{Org: o, Admin: tok}
		return err
	})
	return out, err
}

// LinkGitHub links an org to a GitHub account, so that account's webhooks
// create jobs in it. store.ErrConflict when another org has the account.
func (s *Service) LinkGitHub(ctx context.Context, p auth.Principal, id string, ghID int64, ghLogin string) (store.Org, error) {
	now := s.o.Now()
	err := s.audit.Do(ctx, func(tx *audit.Tx) error {
		if err := tx.Orgs().LinkGitHub(ctx, id, ghID, ghLogin); err != nil {
			return err
		}
		tx.Audit(store.AuditEntry{At: now, OrgID: id, Actor: audit.Actor(p), Action: "org.github_linked", Target: id,
			Detail: map[string]string{"github_login": ghLogin, "github_id": strconv.FormatInt(ghID, 10)}})
		return nil
	})
	if err != nil {
		return store.Org{}, err
	}
	return s.o.Store.Orgs().Get(ctx, id)
}

// RotateSigningKey makes a new signing key the one that signs; the old one
// keeps verifying for KeyOverlap, as long as the longest credential lives.
func (s *Service) RotateSigningKey(ctx context.Context, p auth.Principal) (string, error) {
	id, err := s.o.Keyring.Rotate(ctx, s.o.KeyOverlap)
	if err != nil {
		return "", err
	}
	s.audit.Record(ctx, store.AuditEntry{OrgID: p.Org, Actor: audit.Actor(p), Action: "key.rotated", Target: id})
	return id, nil
}

// AddWebhookSecret adds a new GitHub webhook secret; the old ones stay
// accepted until retired. It returns the secret (shown once) and how many
// are accepted now.
func (s *Service) AddWebhookSecret(ctx context.Context, p auth.Principal) (string, int, error) {
	secret := secrets.NewWebhookSecret()
	n, err := s.o.Secrets.AddWebhook(ctx, secret)
	if err != nil {
		return "", 0, err
	}
	s.audit.Record(ctx, store.AuditEntry{OrgID: p.Org, Actor: audit.Actor(p), Action: "webhook_secret.added", Target: "webhook",
		Detail: map[string]string{"accepted": strconv.Itoa(n)}})
	return secret, n, nil
}

// RetireWebhookSecrets keeps only the newest webhook secret and returns how
// many are accepted now.
func (s *Service) RetireWebhookSecrets(ctx context.Context, p auth.Principal) (int, error) {
	n, err := s.o.Secrets.RetireWebhook(ctx)
	if err != nil {
		return 0, err
	}
	s.audit.Record(ctx, store.AuditEntry{OrgID: p.Org, Actor: audit.Actor(p), Action: "webhook_secret.retired", Target: "webhook",
		Detail: map[string]string{"accepted": strconv.Itoa(n)}})
	return n, nil
}
