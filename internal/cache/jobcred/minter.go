package jobcred

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache/access"
	"github.com/nimbus-build/nimbus/internal/policy"
	"github.com/nimbus-build/nimbus/internal/store"
)

// SourceFinder finds where a GitHub job's code comes from.
type SourceFinder interface {
	Find(ctx context.Context, gh store.GitHubJob) (Source, error)
}

// Minter mints jobs' cache credentials.
type Minter struct {
	Store   store.Store
	Keyring *auth.Keyring
	Policy  *policy.Engine
	// Sources finds GitHub jobs' sources; nil: every GitHub job's source
	// is unknown (read-only).
	Sources SourceFinder
	// DefaultTimeout is the run time of jobs that name none; a credential
	// lives for the job's run time plus ten minutes at most (it dies with
	// the job's lease before that).
	DefaultTimeout time.Duration
	Log            *slog.Logger
}

// Credential is a job's cache credential and what it grants.
type Credential struct {
	Token string
	Grant Grant
}

// The registry cache's policy actions (internal/registry.ActionRead and
// ActionWrite).
const (
	registryRead  access.Action = "registry.read"
	registryWrite access.Action = "registry.write"
)

// githubActor is the submitter of jobs created from GitHub's webhooks: the
// org's GitHub integration, which may do what role ci may.
const githubActor = "github"

// Mint decides what job j (just leased: j.Fence is the lease's) may do
// with the cache and signs a credential that says so. ok is false when the
// job may not use the cache at all.
func (m *Minter) Mint(ctx context.Context, j store.Job) (c Credential, ok bool, err error) {
	sub, err := m.submitter(ctx, j)
	if err != nil {
		return Credential{}, false, err
	}
	may := func(a access.Action) bool {
		return sub != nil && m.Policy.Authorize(ctx, *sub, string(a), policy.Resource{Org: j.OrgID}) == nil
	}
	src, err := m.source(ctx, j)
	if err != nil {
		m.log().WarnContext(ctx, "job source unknown; its cache credential is read-only", "job_id", j.ID, "org", j.OrgID, "err", err)
	}
	trust, err := m.trust(ctx, j.OrgID)
	if err != nil {
		return Credential{}, false, err
	}
	g := Decide(src, trust, may)
	if !g.Read {
		return Credential{}, false, nil
	}
	ttl := j.Spec.Timeout
	if ttl <= 0 {
		ttl = m.DefaultTimeout
	}
	// The registry cache (internal/registry) takes the same credential:
	// a job pulls images when its submitter may, and pushes to the org's
	// own repositories when it may also write the cache (a trusted
	// source: never a fork's pull request).
	scopes := g.Scopes()
	if may(registryRead) {
		scopes = append(scopes, string(registryRead))
	}
	if g.Write && may(registryWrite) {
		scopes = append(scopes, string(registryWrite))
	}
	tok, err := m.Keyring.Sign(auth.Claims{Kind: auth.KindJob, Subject: j.ID, Org: j.OrgID, Scopes: scopes, Fence: j.Fence}, ttl+10*time.Minute)
	if err != nil {
		return Credential{}, false, fmt.Errorf("mint cache credential of job %s: %w", j.ID, err)
	}
	return Credential{Token: tok, Grant: g}, true, nil
}

func (m *Minter) log() *slog.Logger {
	if m.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return m.Log
}

// submitter is the principal the job acts for, as it is now (a revoked or
// expired token may do nothing); nil when there is none.
func (m *Minter) submitter(ctx context.Context, j store.Job) (*auth.Principal, error) {
	if j.Source == store.SourceGitHub && j.CreatedBy == githubActor {
		return &auth.Principal{Kind: auth.KindUser, Org: j.OrgID, ID: githubActor, Name: githubActor, Role: auth.RoleCI}, nil
	}
	id, ok := strings.CutPrefix(j.CreatedBy, string(auth.KindUser)+":")
	if !ok {
		return nil, nil
	}
	t, err := m.Store.Tokens().GetAPIToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("submitter of job %s: %w", j.ID, err)
	}
	now := time.Now()
	if t.OrgID != j.OrgID || !t.RevokedAt.IsZero() || (!t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)) {
		return nil, nil
	}
	return &auth.Principal{Kind: auth.KindUser, Org: t.OrgID, ID: t.ID, Name: t.Name, Role: auth.Role(t.Role)}, nil
}

// source is where the job's code comes from. API jobs have no ref; a
// GitHub job whose source cannot be found is Unknown (err says why).
func (m *Minter) source(ctx context.Context, j store.Job) (Source, error) {
	gh := j.GitHub
	if j.Source != store.SourceGitHub || gh == nil {
		return Source{}, nil
	}
	unknown := Source{Unknown: true, DefaultRef: branchRef(gh.DefaultBranch)}
	if m.Sources == nil {
		return unknown, errors.New("no GitHub App to ask")
	}
	src, err := m.Sources.Find(ctx, *gh)
	if err != nil {
		return unknown, err
	}
	return src, nil
}

func (m *Minter) trust(ctx context.Context, org string) (Trust, error) {
	t, err := m.Store.Orgs().CacheTrust(ctx, org)
	if errors.Is(err, store.ErrNotFound) {
		return Trust{}, nil
	}
	if err != nil {
		return Trust{}, fmt.Errorf("cache trust of org %s: %w", org, err)
	}
	return Trust{UntrustedRefs: t.UntrustedRefs, ACWriteRefs: t.ACWriteRefs}, nil
}

func branchRef(b string) string {
	if b == "" {
		return ""
	}
	return "refs/heads/" + b
}
