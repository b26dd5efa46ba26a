// Package sessions is the control plane's side of remote Bazel: it keeps
// one live session per (user, repository, Bazel release, startup options)
// in the store, schedules new ones on an agent of the user's org that runs
// the same Bazel release and has room, hands proxies what they need for the
// mTLS tunnel (a short-lived user certificate, the CA, the agent's
// identity), tells agents which sessions to start and stop, and reaps
// sessions left idle. Every session created, attached, stopped and reaped
// is audited.
package sessions

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/notify"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/policy"
	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/rbs/sessionapi"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Options configure a Broker.
type Options struct {
	Store  store.Store
	CA     *pki.CA
	Policy *policy.Engine
	// IdleTTL: a session no proxy has used for this long is stopped.
	IdleTTL time.Duration
	// CertTTL bounds users' tunnel certificates.
	CertTTL time.Duration
	// AgentCertTTL bounds agents' tunnel certificates (default
	// DefaultAgentCertTTL).
	AgentCertTTL time.Duration
	// HeartbeatInterval is how often a proxy in use says so.
	HeartbeatInterval time.Duration
	// StartTimeout bounds the wait for an agent to start a session.
	StartTimeout time.Duration
	// AgentOnline: an agent seen within this long may be given sessions.
	AgentOnline time.Duration
	// PollInterval bounds waits between database checks.
	PollInterval time.Duration
	// Notifier wakes long polls; connect it to a relay to wake the other
	// replicas' too. Default: a new one for this process.
	Notifier *notify.Notifier
	Logger   *slog.Logger
	Now      func() time.Time
}

// Broker implements sessionapi.Broker on the store. Safe for concurrent use.
type Broker struct {
	o      Options
	log    *slog.Logger
	notify *notify.Notifier
	rec    *audit.Log
}

var _ sessionapi.Broker = (*Broker)(nil)

// New builds a Broker.
func New(o Options) *Broker {
	if o.IdleTTL <= 0 {
		o.IdleTTL = 3 * time.Hour
	}
	if o.CertTTL <= 0 {
		o.CertTTL = 12 * time.Hour
	}
	if o.AgentCertTTL <= 0 {
		o.AgentCertTTL = DefaultAgentCertTTL
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 30 * time.Second
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 2 * time.Minute
	}
	if o.AgentOnline <= 0 {
		o.AgentOnline = time.Minute
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Notifier == nil {
		o.Notifier = notify.New()
	}
	return &Broker{o: o, log: o.Logger.With("component", "sessions"), notify: o.Notifier, rec: audit.New(o.Store, o.Now, o.Logger)}
}

// ErrInvalid marks a request the caller must fix.
var ErrInvalid = errors.New("invalid request")

// UserOf is the remote Bazel user a principal is: its stable principal
// id (the API token's id) in its org. Never the token's name: anyone who
// may mint tokens can name one like a colleague, and a user's sessions,
// workspaces and tunnel certificates must not follow a name.
func UserOf(p auth.Principal) pki.Identity { return pki.UserIdentity(p.Org, p.ID) }

// user checks that p may use remote Bazel and returns its identity.
func (b *Broker) user(ctx context.Context, p auth.Principal) (pki.Identity, error) {
	if p.Kind != auth.KindUser {
		return pki.Identity{}, fmt.Errorf("%w: only users have remote Bazel sessions", auth.ErrForbidden)
	}
	if err := b.o.Policy.Authorize(ctx, p, "sessions.use", policy.Resource{Org: p.Org}); err != nil {
		return pki.Identity{}, err
	}
	id := UserOf(p)
	if err := id.Validate(); err != nil {
		return pki.Identity{}, fmt.Errorf("%w: principal %q cannot name a remote Bazel user: %v", auth.ErrForbidden, p.ID, err)
	}
	return id, nil
}

// UserCertificate issues p a user certificate of the CA over csr, which a
// remote Bazel proxy presents to the control plane (mutual TLS), valid for
// 30 days. The tunnel to an agent uses a shorter-lived one from GetServer.
func (b *Broker) UserCertificate(ctx context.Context, p auth.Principal, csr *x509.CertificateRequest) ([]byte, pki.Identity, error) {
	if p.Kind != auth.KindUser {
		return nil, pki.Identity{}, fmt.Errorf("%w: only users have remote Bazel certificates", auth.ErrForbidden)
	}
	id := UserOf(p)
	if err := id.Validate(); err != nil {
		return nil, id, fmt.Errorf("%w: principal %q cannot name a remote Bazel user: %v", auth.ErrForbidden, p.ID, err)
	}
	cert, err := b.o.CA.SignCSR(csr, id, pki.IssueOptions{TTL: 30 * 24 * time.Hour})
	if err != nil {
		return nil, id, fmt.Errorf("%w: csr: %v", ErrInvalid, err)
	}
	b.rec.Record(ctx, store.AuditEntry{OrgID: p.Org, Actor: audit.Actor(p), Action: "rbs.certificate_issued", Target: id.String()})
	return cert, id, nil
}

// sessionKey makes sessions the same: user, repository, Bazel release and
// startup options (a different set is a different server, as locally).
func sessionKey(user pki.Identity, req rbs.ServerRequest) string {
	h := sha256.New()
	for _, s := range append([]string{user.String(), req.RepoHash, req.InstallMD5}, req.StartupOptions...) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// GetServer implements sessionapi.Broker: the user's live session for req,
// or a new one on an agent that can serve it, once its Bazel server runs.
func (b *Broker) GetServer(ctx context.Context, p auth.Principal, req rbs.ServerRequest, csr *x509.CertificateRequest) (sessionapi.Grant, error) {
	user, err := b.user(ctx, p)
	if err != nil {
		return sessionapi.Grant{}, err
	}
	certPEM, err := b.o.CA.SignCSR(csr, user, pki.IssueOptions{TTL: b.o.CertTTL})
	if err != nil {
		return sessionapi.Grant{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	key := sessionKey(user, req)
	s, reused, err := b.findOrCreate(ctx, p, user, key, req)
	if err != nil {
		return sessionapi.Grant{}, err
	}
	s, err = b.waitReady(ctx, s)
	if err != nil {
		return sessionapi.Grant{}, err
	}
	agent, err := b.o.Store.Agents().Get(ctx, s.AgentID)
	if err != nil {
		return sessionapi.Grant{}, err
	}
	return sessionapi.Grant{
		SessionID: s.ID, AgentAddress: s.Address, Agent: pki.AgentIdentity(agent.OrgID, agent.ID),
		CACertPEM: b.o.CA.CertPEM(), ClientCertPEM: certPEM, Reused: reused, HeartbeatInterval: b.o.HeartbeatInterval,
	}, nil
}

func (b *Broker) findOrCreate(ctx context.Context, p auth.Principal, user pki.Identity, key string, req rbs.ServerRequest) (store.Session, bool, error) {
	now := b.o.Now()
	for attempt := 0; ; attempt++ {
		live, err := b.o.Store.Sessions().GetLive(ctx, key)
		if err == nil && live.State != store.SessionStopping {
			if err := b.o.Store.Sessions().Touch(ctx, live.ID, now); err != nil {
				return live, false, err
			}
			b.audit(ctx, p, "session.attached", live)
			return live, true, nil
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return store.Session{}, false, err
		}
		if err == nil { // stopping: wait for it to end, then start anew
			if attempt > 0 {
				return store.Session{}, false, fmt.Errorf("%w: the previous session %s is still stopping; try again", rbs.ErrNoAgent, live.ID)
			}
			if _, _, err := b.waitState(ctx, live.ID, 10*time.Second, func(s store.Session) bool { return !s.State.Live() }); err != nil {
				return store.Session{}, false, err
			}
			continue
		}
		b.replaceOthers(ctx, p, user, key, req)
		agent, err := b.pickAgent(ctx, p.Org, req)
		if err != nil {
			return store.Session{}, false, err
		}
		body, _ := json.Marshal(req)
		s := store.Session{
			ID: ids.New("ses"), OrgID: p.Org, User: UserOf(p).Name, Key: key, RepoHash: req.RepoHash, InstallMD5: req.InstallMD5,
			Request: string(body), AgentID: agent.ID, State: store.SessionPending, CreatedAt: now, UpdatedAt: now, LastUsedAt: now,
		}
		err = b.o.Store.Sessions().Create(ctx, s)
		if errors.Is(err, store.ErrConflict) && attempt < 3 {
			continue // another proxy of the same user won the race: attach to it
		}
		if err != nil {
			return s, false, err
		}
		b.audit(ctx, p, "session.created", s)
		b.notify.Notify(agentTopic(agent.ID))
		return s, false, nil
	}
}

// replaceOthers stops the user's other sessions of the same repository: a
// different Bazel release or startup options replace the server, as a
// local Bazel client restarts its own.
func (b *Broker) replaceOthers(ctx context.Context, p auth.Principal, user pki.Identity, key string, req rbs.ServerRequest) {
	list, err := b.o.Store.Sessions().List(ctx, store.SessionFilter{OrgID: p.Org, User: UserOf(p).Name, LiveOnly: true})
	if err != nil {
		b.log.Warn("list sessions", "err", err)
		return
	}
	for _, s := range list {
		if s.RepoHash == req.RepoHash && s.Key != key {
			if _, err := b.stop(ctx, s, "replaced by a session with other Bazel startup options or release"); err == nil {
				b.audit(ctx, p, "session.replaced", s)
			}
		}
	}
}

// pickAgent chooses the online agent of org that runs req's Bazel release
// with the most room, or says precisely why none can.
func (b *Broker) pickAgent(ctx context.Context, org string, req rbs.ServerRequest) (store.Agent, error) {
	agents, err := b.o.Store.Agents().List(ctx, org)
	if err != nil {
		return store.Agent{}, err
	}
	now := b.o.Now()
	var reasons []string
	best, bestRoom := store.Agent{}, 0
	for _, a := range agents {
		switch {
		case a.RBS == nil:
			continue
		case !a.DisabledAt.IsZero():
			continue
		case now.Sub(a.LastSeenAt) > b.o.AgentOnline:
			reasons = append(reasons, fmt.Sprintf("%s is offline", a.Name))
			continue
		case !slices.Contains(a.RBS.InstallMD5s, req.InstallMD5):
			reasons = append(reasons, fmt.Sprintf("%s runs Bazel %s", a.Name, strings.Join(versions(a.RBS), ", ")))
			continue
		}
		n, err := b.o.Store.Sessions().CountLive(ctx, a.ID)
		if err != nil {
			return store.Agent{}, err
		}
		if room := a.RBS.MaxSessions - n; room > bestRoom {
			best, bestRoom = a, room
		} else if room <= 0 {
			reasons = append(reasons, fmt.Sprintf("%s is full (%d sessions)", a.Name, n))
		}
	}
	if best.ID != "" {
		return best, nil
	}
	if len(reasons) == 0 {
		reasons = append(reasons, "no agent of this org offers remote Bazel (start one with --rbs-listen)")
	}
	sort.Strings(reasons)
	v := req.BazelVersion
	if v == "" {
		v = "install_md5 " + req.InstallMD5
	}
	return store.Agent{}, fmt.Errorf("%w: Bazel %s for %s: %s", rbs.ErrNoAgent, v, req.Workspace, strings.Join(reasons, "; "))
}

func versions(r *store.AgentRBS) []string {
	if len(r.Versions) > 0 {
		return r.Versions
	}
	return r.InstallMD5s
}

// waitReady waits until the agent reports the session ready (or failed).
func (b *Broker) waitReady(ctx context.Context, s store.Session) (store.Session, error) {
	if s.State == store.SessionReady {
		return s, nil
	}
	got, met, err := b.waitState(ctx, s.ID, b.o.StartTimeout, func(s store.Session) bool { return s.State != store.SessionPending })
	if err != nil {
		return got, err
	}
	if !met {
		b.stop(context.WithoutCancel(ctx), s, "the agent did not start it in time")
		return got, fmt.Errorf("%w: the agent did not start the session within %v", rbs.ErrNoAgent, b.o.StartTimeout)
	}
	if got.State != store.SessionReady {
		return got, fmt.Errorf("%w: the agent could not start the session: %s", rbs.ErrNoAgent, got.Reason)
	}
	return got, nil
}

// waitState polls a session (woken by agent reports) until cond holds
// (met) or within has passed; it returns the context's error when the
// context ends first (notify.LongPoll).
func (b *Broker) waitState(ctx context.Context, id string, within time.Duration, cond func(store.Session) bool) (s store.Session, met bool, err error) {
	err = b.notify.LongPoll(ctx, sessionTopic(id), within, b.o.PollInterval, func() (bool, error) {
		var err error
		s, err = b.o.Store.Sessions().Get(ctx, id)
		met = err == nil && cond(s)
		return met, err
	})
	return s, met, err
}

// own returns a session of p's, refusing any other user's as not found.
func (b *Broker) own(ctx context.Context, p auth.Principal, id string) (store.Session, error) {
	if _, err := b.user(ctx, p); err != nil {
		return store.Session{}, err
	}
	s, err := b.o.Store.Sessions().Get(ctx, id)
	if err != nil || s.OrgID != p.Org || s.User != UserOf(p).Name {
		return store.Session{}, fmt.Errorf("session %s: %w", id, sessionapi.ErrNotFound)
	}
	return s, nil
}

// Heartbeat implements sessionapi.Broker.
func (b *Broker) Heartbeat(ctx context.Context, p auth.Principal, id string) error {
	s, err := b.own(ctx, p, id)
	if err != nil {
		return err
	}
	if err := b.o.Store.Sessions().Touch(ctx, s.ID, b.o.Now()); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("session %s has ended: %w", id, sessionapi.ErrNotFound)
	} else if err != nil {
		return err
	}
	return nil
}

// Release implements sessionapi.Broker: the proxy is done, the session stays
// warm for its idle TTL so the next proxy attaches to it.
func (b *Broker) Release(ctx context.Context, p auth.Principal, id string) error {
	s, err := b.own(ctx, p, id)
	if err != nil {
		return err
	}
	b.audit(ctx, p, "session.released", s)
	return nil
}

// List lists an org's sessions (a user's own, unless the principal may
// stop others': admins see all).
func (b *Broker) List(ctx context.Context, p auth.Principal, liveOnly bool) ([]store.Session, error) {
	if err := b.o.Policy.Authorize(ctx, p, "sessions.read", policy.Resource{Org: p.Org}); err != nil {
		return nil, err
	}
	f := store.SessionFilter{OrgID: p.Org, LiveOnly: liveOnly}
	if b.o.Policy.Authorize(ctx, p, "sessions.stop", policy.Resource{Org: p.Org}) != nil {
		f.User = UserOf(p).Name
	}
	return b.o.Store.Sessions().List(ctx, f)
}

// Stop ends a session: the user's own, or any of the org's for an admin.
func (b *Broker) Stop(ctx context.Context, p auth.Principal, id string) (store.Session, error) {
	s, err := b.o.Store.Sessions().Get(ctx, id)
	if err != nil || s.OrgID != p.Org {
		return store.Session{}, fmt.Errorf("session %s: %w", id, store.ErrNotFound)
	}
	if s.User != UserOf(p).Name || p.Kind != auth.KindUser {
		if err := b.o.Policy.Authorize(ctx, p, "sessions.stop", policy.Resource{Org: p.Org}); err != nil {
			return store.Session{}, fmt.Errorf("session %s: %w", id, store.ErrNotFound)
		}
	} else if _, err := b.user(ctx, p); err != nil {
		return store.Session{}, err
	}
	out, err := b.stop(ctx, s, "stopped by "+p.Name+" ("+p.ID+")")
	if err != nil {
		return out, err
	}
	b.audit(ctx, p, "session.stopped", s)
	return out, nil
}

// stop asks the session's agent to stop it (or ends it at once when the
// agent never started it).
func (b *Broker) stop(ctx context.Context, s store.Session, reason string) (store.Session, error) {
	out, err := b.o.Store.Sessions().Transition(ctx, s.ID, []store.SessionState{store.SessionPending, store.SessionReady},
		store.SessionStopping, "", reason, b.o.Now())
	if errors.Is(err, store.ErrNotFound) {
		return b.o.Store.Sessions().Get(ctx, s.ID) // already ending or over
	}
	if err != nil {
		return out, err
	}
	b.notify.Notify(agentTopic(s.AgentID))
	b.notify.Notify(sessionTopic(s.ID))
	return out, nil
}

// audit records what happened to a session (p: who did it; none: the
// system).
func (b *Broker) audit(ctx context.Context, p auth.Principal, action string, s store.Session) {
	actor := "system"
	if p.ID != "" {
		actor = audit.Actor(p)
	}
	b.rec.Record(ctx, store.AuditEntry{OrgID: s.OrgID, Actor: actor, Action: action, Target: s.ID,
		Detail: map[string]string{"user": s.User, "repo_hash": s.RepoHash, "agent_id": s.AgentID}})
}

func agentTopic(id string) string   { return "agent/" + id }
func sessionTopic(id string) string { return "session/" + id }
