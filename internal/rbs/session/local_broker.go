package session

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/rbs/server"
)

// Agent hosts sessions: a server.Host in the same process, or a handle on
// an agent elsewhere.
type Agent interface {
	StartSession(ctx context.Context, spec server.SessionSpec) (server.Endpoint, error)
	StopSession(ctx context.Context, id string) error
	InstallMD5() string
}

var _ Agent = (*server.Host)(nil)

// LocalBrokerOptions configure a LocalBroker.
type LocalBrokerOptions struct {
	CA     *pki.CA
	Agents []Agent
	// IdleTTL: a session without heartbeat for that long is reaped
	// (default 1h).
	IdleTTL time.Duration
	// CertTTL is the validity of users' tunnel certificates (default 12h).
	CertTTL           time.Duration
	HeartbeatInterval time.Duration // default 30s
	Logger            *slog.Logger
	Now               func() time.Time
}

// LocalBroker is an in-memory Broker: one live session per (user, repo,
// Bazel release, startup options), scheduled on the first agent with the
// same Bazel release and room for it, reused across proxies, reaped when
// idle. `nimbus up`, the tests and the benchmark use it; the control plane
// keeps the same rules in its sessions table.
type LocalBroker struct {
	opts LocalBrokerOptions
	log  *slog.Logger

	mu       sync.Mutex
	sessions map[string]*localSession // by id
}

type localSession struct {
	id       string
	key      string
	user     pki.Identity
	req      rbs.ServerRequest
	agent    Agent
	ep       server.Endpoint
	lastUsed time.Time
	created  time.Time
}

// SessionInfo describes a session of a LocalBroker.
type SessionInfo struct {
	ID       string
	User     pki.Identity
	RepoHash string
	Agent    string
	Created  time.Time
	LastUsed time.Time
}

// NewLocalBroker returns a broker.
func NewLocalBroker(opts LocalBrokerOptions) *LocalBroker {
	if opts.IdleTTL <= 0 {
		opts.IdleTTL = time.Hour
	}
	if opts.CertTTL <= 0 {
		opts.CertTTL = 12 * time.Hour
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &LocalBroker{opts: opts, log: opts.Logger.With("component", "rbs-broker"), sessions: map[string]*localSession{}}
}

var _ Broker = (*LocalBroker)(nil)

func (b *LocalBroker) audit(action string, p auth.Principal, s *localSession) {
	b.log.Info("audit", "action", action, "org", p.Org, "user", p.Name, "session_id", s.id, "repo_hash", s.req.RepoHash, "agent", s.ep.Agent.Name)
}

// userOf checks that p may use remote Bazel and returns its identity.
func userOf(p auth.Principal) (pki.Identity, error) {
	if p.Kind != auth.KindUser {
		return pki.Identity{}, fmt.Errorf("%w: only users have remote Bazel sessions", auth.ErrForbidden)
	}
	if slices.Index(auth.Roles, p.Role) < slices.Index(auth.Roles, auth.RoleDeveloper) {
		return pki.Identity{}, fmt.Errorf("%w: remote Bazel needs the developer role", auth.ErrForbidden)
	}
	id := pki.UserIdentity(p.Org, p.Name)
	if err := id.Validate(); err != nil {
		return pki.Identity{}, fmt.Errorf("%w: %v", auth.ErrForbidden, err)
	}
	return id, nil
}

func sessionKey(user pki.Identity, req rbs.ServerRequest) string {
	return strings.Join(append([]string{user.String(), req.RepoHash, req.InstallMD5}, req.StartupOptions...), "\x00")
}

// GetServer returns the user's live session for req, or starts one.
func (b *LocalBroker) GetServer(ctx context.Context, p auth.Principal, req rbs.ServerRequest, csr *x509.CertificateRequest) (Grant, error) {
	user, err := userOf(p)
	if err != nil {
		return Grant{}, err
	}
	certPEM, err := b.opts.CA.SignCSR(csr, user, pki.IssueOptions{TTL: b.opts.CertTTL})
	if err != nil {
		return Grant{}, err
	}
	key := sessionKey(user, req)
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.opts.Now()
	for _, s := range b.sessions {
		if s.key == key {
			s.lastUsed = now
			b.audit("session.attached", p, s)
			return b.grant(s, certPEM, true), nil
		}
	}
	// One server per repository of a user: another release or other
	// startup options replace it, as a local client restarts its server.
	for id, s := range b.sessions {
		if s.user == user && s.req.RepoHash == req.RepoHash {
			if err := s.agent.StopSession(ctx, id); err != nil {
				b.log.Warn("stopping replaced session", "session_id", id, "err", err)
			}
			delete(b.sessions, id)
			b.audit("session.replaced", p, s)
		}
	}
	s := &localSession{id: newSessionID(), key: key, user: user, req: req, created: now, lastUsed: now}
	spec := server.SessionSpec{
		ID: s.id, User: user, RepoHash: req.RepoHash,
		Mirror:     server.Mirror{Workspace: req.Workspace, OutputBase: req.OutputBase, OutputUserRoot: req.OutputUserRoot},
		InstallMD5: req.InstallMD5, StartupOptions: req.StartupOptions,
	}
	var reasons []string
	for _, a := range b.opts.Agents {
		if a.InstallMD5() != req.InstallMD5 {
			reasons = append(reasons, fmt.Sprintf("an agent has Bazel %s", a.InstallMD5()))
			continue
		}
		ep, err := a.StartSession(ctx, spec)
		if err != nil {
			if errors.Is(err, server.ErrNoCapacity) || errors.Is(err, server.ErrBusy) {
				reasons = append(reasons, err.Error())
				continue
			}
			return Grant{}, fmt.Errorf("start session: %w", err)
		}
		s.agent, s.ep = a, ep
		b.sessions[s.id] = s
		b.audit("session.created", p, s)
		return b.grant(s, certPEM, false), nil
	}
	if len(reasons) == 0 {
		reasons = append(reasons, "no agents")
	}
	return Grant{}, fmt.Errorf("%w: Bazel with install_md5 %s (%s) for %s: %s", rbs.ErrNoAgent, req.InstallMD5, req.BazelVersion, req.Workspace, strings.Join(reasons, "; "))
}

func (b *LocalBroker) grant(s *localSession, certPEM []byte, reused bool) Grant {
	return Grant{
		SessionID: s.id, AgentAddress: s.ep.Address, Agent: s.ep.Agent,
		CACertPEM: b.opts.CA.CertPEM(), ClientCertPEM: certPEM,
		Reused: reused, HeartbeatInterval: b.opts.HeartbeatInterval,
	}
}

// find returns the user's session; others' sessions are not found.
func (b *LocalBroker) find(p auth.Principal, id string) (*localSession, error) {
	user, err := userOf(p)
	if err != nil {
		return nil, err
	}
	s, ok := b.sessions[id]
	if !ok || s.user != user {
		return nil, ErrNotFound
	}
	return s, nil
}

// Heartbeat postpones the session's reaping.
func (b *LocalBroker) Heartbeat(_ context.Context, p auth.Principal, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, err := b.find(p, id)
	if err != nil {
		return err
	}
	s.lastUsed = b.opts.Now()
	return nil
}

// Release records that a proxy detached; the session stays warm until its
// idle TTL.
func (b *LocalBroker) Release(_ context.Context, p auth.Principal, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, err := b.find(p, id)
	if err != nil {
		return err
	}
	s.lastUsed = b.opts.Now()
	b.audit("session.released", p, s)
	return nil
}

// Stop ends a session (nimbus ctl sessions stop).
func (b *LocalBroker) Stop(ctx context.Context, p auth.Principal, id string) error {
	b.mu.Lock()
	s, err := b.find(p, id)
	if err == nil {
		delete(b.sessions, id)
	}
	b.mu.Unlock()
	if err != nil {
		return err
	}
	b.audit("session.stopped", p, s)
	return s.agent.StopSession(ctx, id)
}

// Reap stops the sessions idle past the TTL and returns how many.
func (b *LocalBroker) Reap(ctx context.Context) int {
	b.mu.Lock()
	var idle []*localSession
	now := b.opts.Now()
	for id, s := range b.sessions {
		if now.Sub(s.lastUsed) > b.opts.IdleTTL {
			idle = append(idle, s)
			delete(b.sessions, id)
		}
	}
	b.mu.Unlock()
	for _, s := range idle {
		b.audit("session.reaped", auth.Principal{Org: s.user.Org, Name: s.user.Name}, s)
		if err := s.agent.StopSession(ctx, s.id); err != nil {
			b.log.Warn("reaping session", "session_id", s.id, "err", err)
		}
	}
	return len(idle)
}

// Run reaps idle sessions every minute until ctx ends.
func (b *LocalBroker) Run(ctx context.Context) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			b.Reap(ctx)
		}
	}
}

// Sessions lists the live sessions.
func (b *LocalBroker) Sessions() []SessionInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []SessionInfo
	for _, s := range b.sessions {
		out = append(out, SessionInfo{ID: s.id, User: s.user, RepoHash: s.req.RepoHash, Agent: s.ep.Agent.Name, Created: s.created, LastUsed: s.lastUsed})
	}
	slices.SortFunc(out, func(a, b SessionInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func newSessionID() string {
	var b [8]byte
	rand.Read(b[:])
	return "s-" + hex.EncodeToString(b[:])
}
