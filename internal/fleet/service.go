// Package fleet manages the agents of each org: one-time join tokens,
// enrollment (a join token exchanged for an agent and its credential),
// what an agent declares when it starts (verified against what its
// enrollment allows, never trusted), credential refresh and disabling.
// Every change is made together with its audit entry (internal/audit).
package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/policy"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Options are the Service's dependencies.
type Options struct {
	Store   store.Store
	Keyring *auth.Keyring
	// Policy decides which agents a caller may manage (agents.disable on
	// the agent's role).
	Policy *policy.Engine
	// CredentialTTL is how long an agent credential lives; agents refresh
	// it before it expires. Default 24h.
	CredentialTTL time.Duration
	Logger        *slog.Logger
	Now           func() time.Time
}

// Service manages agents. It is safe for concurrent use.
type Service struct {
	store   store.Store
	keyring *auth.Keyring
	policy  *policy.Engine
	ttl     time.Duration
	audit   *audit.Log
	now     func() time.Time
}

// New builds a Service.
func New(o Options) *Service {
	if o.CredentialTTL <= 0 {
		o.CredentialTTL = 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{store: o.Store, keyring: o.Keyring, policy: o.Policy, ttl: o.CredentialTTL, audit: audit.New(o.Store, o.Now, o.Logger), now: o.Now}
}

// JoinToken is a join token just created, with its secret (shown once).
type JoinToken struct {
	store.JoinToken
	Secret string
}

// CreateJoinToken creates a one-time join token of p's org that enrolls
// one agent serving at most labels (and at most maxJobs at once, 0: no
// limit), valid for ttl. The agent takes p's role: only that role or a
// stronger one may manage it.
func (s *Service) CreateJoinToken(ctx context.Context, p auth.Principal, labels []string, maxJobs int, ttl time.Duration) (JoinToken, error) {
	secret, hash := auth.NewSecret(auth.JoinTokenPrefix)
	now := s.now()
	jt := store.JoinToken{ID: ids.New("jtk"), OrgID: p.Org, Hash: hash, Labels: labels, MaxJobs: maxJobs,
		CreatedBy: audit.Actor(p), Role: string(p.Role), CreatedAt: now, ExpiresAt: now.Add(ttl)}
	err := s.audit.Do(ctx, func(tx *audit.Tx) error {
		tx.Audit(store.AuditEntry{At: now, OrgID: p.Org, Actor: audit.Actor(p), Action: "agent.join_token_created",
			Target: jt.ID, Detail: map[string]string{"labels": strings.Join(labels, ","), "expires_at": jt.ExpiresAt.Format(time.RFC3339)}})
		return tx.Tokens().CreateJoinToken(ctx, jt)
	})
	if err != nil {
		return JoinToken{}, err
	}
	return JoinToken{JoinToken: jt, Secret: secret}, nil
}

// Enrollment is what a new agent declares about itself.
type Enrollment struct {
	Name string
	// Labels it serves (empty: all its join token allows).
	Labels   []string
	MaxJobs  int
	Hostname string
	Version  string
}

// Enroll exchanges a one-time join token for a new agent of the token's
// org. The token is consumed in the same transaction, so an enrollment
// that is refused (labels or max_jobs beyond the token's) leaves it
// unused. Errors: store.ErrTokenUsed, auth.ErrForbidden.
func (s *Service) Enroll(ctx context.Context, joinToken string, e Enrollment) (store.Agent, error) {
	now := s.now()
	a := store.Agent{ID: ids.New("agt"), Name: e.Name, Labels: e.Labels, MaxJobs: e.MaxJobs,
		Hostname: e.Hostname, Version: e.Version, CreatedAt: now, LastSeenAt: now}
	err := s.audit.Do(ctx, func(tx *audit.Tx) error {
		jt, err := tx.Tokens().ConsumeJoinToken(ctx, auth.HashSecret(joinToken), a.ID, now)
		if err != nil {
			return err
		}
		if len(a.Labels) == 0 {
			a.Labels = jt.Labels
		}
		if !subset(a.Labels, jt.Labels) {
			return fmt.Errorf("%w: labels %v: this join token allows only %v", auth.ErrForbidden, a.Labels, jt.Labels)
		}
		if jt.MaxJobs > 0 && a.MaxJobs > jt.MaxJobs {
			return fmt.Errorf("%w: max_jobs %d: this join token allows at most %d", auth.ErrForbidden, a.MaxJobs, jt.MaxJobs)
		}
		a.OrgID, a.AllowedLabels, a.Role = jt.OrgID, jt.Labels, jt.Role
		tx.Audit(store.AuditEntry{At: now, OrgID: a.OrgID, Actor: "join_token:" + jt.ID, Action: "agent.enrolled",
			Target: a.ID, Detail: map[string]string{"name": a.Name, "labels": strings.Join(a.Labels, ",")}})
		return tx.Agents().Create(ctx, a)
	})
	if err != nil {
		return store.Agent{}, err
	}
	return a, nil
}

// Registration is what a starting agent declares: what it serves now.
type Registration struct {
	// Labels it serves (empty: all its enrollment allows).
	Labels   []string
	MaxJobs  int
	Hostname string
	Version  string
}

// Register records what a starting agent declares. Capabilities are
// verified, not trusted: labels beyond the enrollment's are refused
// (auth.ErrForbidden) and the refusal is audited.
func (s *Service) Register(ctx context.Context, a store.Agent, r Registration) (store.Agent, error) {
	labels := r.Labels
	if len(labels) == 0 {
		labels = a.AllowedLabels
	}
	if !subset(labels, a.AllowedLabels) {
		s.audit.Record(ctx, store.AuditEntry{OrgID: a.OrgID, Actor: "agent:" + a.ID, Action: "agent.labels_refused", Target: a.ID,
			Detail: map[string]string{"declared": strings.Join(labels, ","), "allowed": strings.Join(a.AllowedLabels, ",")}})
		return store.Agent{}, fmt.Errorf("%w: labels %v: this agent's enrollment allows only %v", auth.ErrForbidden, labels, a.AllowedLabels)
	}
	if err := s.store.Agents().Register(ctx, a.ID, labels, r.MaxJobs, r.Hostname, r.Version, s.now()); err != nil {
		return store.Agent{}, err
	}
	a.Labels, a.MaxJobs, a.Hostname, a.Version = labels, r.MaxJobs, r.Hostname, r.Version
	return a, nil
}

// Credential signs a credential for the agent, valid for the configured
// TTL; it returns the credential and when it expires.
func (s *Service) Credential(a store.Agent) (string, time.Time, error) {
	cred, err := s.keyring.Sign(auth.Claims{Kind: auth.KindAgent, Subject: a.ID, Org: a.OrgID, Name: a.Name}, s.ttl)
	if err != nil {
		return "", time.Time{}, err
	}
	return cred, s.now().Add(s.ttl), nil
}

// List lists an org's agents.
func (s *Service) List(ctx context.Context, org string) ([]store.Agent, error) {
	return s.store.Agents().List(ctx, org)
}

// Disable disables an agent of p's org: its credential stops working at
// once. p may only disable agents of its own role or a weaker one
// (agents.disable: an admin cannot disable the agents an owner enrolled).
// store.ErrNotFound for an agent of another org.
func (s *Service) Disable(ctx context.Context, p auth.Principal, id string) (store.Agent, error) {
	now := s.now()
	a, err := s.store.Agents().Get(ctx, id)
	if err != nil || a.OrgID != p.Org {
		return store.Agent{}, fmt.Errorf("agent %s: %w", id, store.ErrNotFound)
	}
	if err := s.policy.Authorize(ctx, p, "agents.disable", policy.Resource{Org: p.Org, Role: a.Role}); err != nil {
		return store.Agent{}, fmt.Errorf("disable an agent of role %s: %w", a.Role, err)
	}
	err = s.audit.Do(ctx, func(tx *audit.Tx) error {
		tx.Audit(store.AuditEntry{At: now, OrgID: p.Org, Actor: audit.Actor(p), Action: "agent.disabled", Target: id,
			Detail: map[string]string{"role": a.Role}})
		return tx.Agents().Disable(ctx, p.Org, id, now)
	})
	if err != nil {
		return store.Agent{}, err
	}
	return s.store.Agents().Get(ctx, id)
}

// subset reports whether every label of a is in b.
func subset(a, b []string) bool {
	for _, l := range a {
		if !slices.Contains(b, l) {
			return false
		}
	}
	return true
}
