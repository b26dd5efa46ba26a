package apiclient

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// call sends a request for route rt with its {…} set to args, the query q
// (may be nil) and in as the body (POST routes without one send {}), and
// decodes a 2xx answer into out. Paths come from apiv1.Routes only.
func (c *Client) call(ctx context.Context, rt apiv1.Route, args []string, q url.Values, in, out any) (int, error) {
	path := rt.URL(args...)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if in == nil && rt.Method == http.MethodPost {
		in = struct{}{}
	}
	return c.Do(ctx, rt.Method, path, in, out)
}

// get is call for an answer of type T.
func get[T any](ctx context.Context, c *Client, rt apiv1.Route, args []string, q url.Values, in any) (T, error) {
	var out T
	_, err := c.call(ctx, rt, args, q, in, &out)
	return out, err
}

func ids(id ...string) []string { return id }

// Whoami says who the client's token is.
func (c *Client) Whoami(ctx context.Context) (apiv1.Whoami, error) {
	return get[apiv1.Whoami](ctx, c, apiv1.RouteWhoami, nil, nil, nil)
}

// SubmitJob submits a job. A repeated idempotency key returns the first
// job.
func (c *Client) SubmitJob(ctx context.Context, j apiv1.SubmitJob) (apiv1.Job, error) {
	return get[apiv1.Job](ctx, c, apiv1.RouteSubmitJob, nil, nil, j)
}

// JobQuery selects jobs for ListJobs.
type JobQuery struct {
	State  string // empty: any
	Before string // a job id: the page after it
	Limit  int    // 0: the server's default
}

// ListJobs lists the org's jobs, newest first.
func (c *Client) ListJobs(ctx context.Context, q JobQuery) (apiv1.JobList, error) {
	v := url.Values{}
	if q.State != "" {
		v.Set("state", q.State)
	}
	if q.Before != "" {
		v.Set("before", q.Before)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return get[apiv1.JobList](ctx, c, apiv1.RouteListJobs, nil, v, nil)
}

// GetJob returns one job.
func (c *Client) GetJob(ctx context.Context, id string) (apiv1.Job, error) {
	return get[apiv1.Job](ctx, c, apiv1.RouteGetJob, ids(id), nil, nil)
}

// CancelJob cancels a job: a queued one at once, a running one soon.
func (c *Client) CancelJob(ctx context.Context, id string) (apiv1.Job, error) {
	return get[apiv1.Job](ctx, c, apiv1.RouteCancelJob, ids(id), nil, nil)
}

// CreateJoinToken creates a one-time join token for one agent.
func (c *Client) CreateJoinToken(ctx context.Context, req apiv1.CreateJoinToken) (apiv1.JoinToken, error) {
	return get[apiv1.JoinToken](ctx, c, apiv1.RouteCreateJoinToken, nil, nil, req)
}

// ListAgents lists the org's agents.
func (c *Client) ListAgents(ctx context.Context) ([]apiv1.Agent, error) {
	l, err := get[apiv1.AgentList](ctx, c, apiv1.RouteListAgents, nil, nil, nil)
	return l.Agents, err
}

// DisableAgent disables an agent: its credential stops working at once.
func (c *Client) DisableAgent(ctx context.Context, id string) (apiv1.Agent, error) {
	return get[apiv1.Agent](ctx, c, apiv1.RouteDisableAgent, ids(id), nil, nil)
}

// CreateToken creates an API token; the answer carries its secret, once.
func (c *Client) CreateToken(ctx context.Context, req apiv1.CreateToken) (apiv1.Token, error) {
	return get[apiv1.Token](ctx, c, apiv1.RouteCreateToken, nil, nil, req)
}

// ListTokens lists the org's API tokens (without secrets).
func (c *Client) ListTokens(ctx context.Context) ([]apiv1.Token, error) {
	l, err := get[apiv1.TokenList](ctx, c, apiv1.RouteListTokens, nil, nil, nil)
	return l.Tokens, err
}

// RevokeToken revokes an API token, at once.
func (c *Client) RevokeToken(ctx context.Context, id string) (apiv1.Token, error) {
	return get[apiv1.Token](ctx, c, apiv1.RouteRevokeToken, ids(id), nil, nil)
}

// ListOrgs lists the installation's orgs (owner).
func (c *Client) ListOrgs(ctx context.Context) ([]apiv1.Org, error) {
	l, err := get[apiv1.OrgList](ctx, c, apiv1.RouteListOrgs, nil, nil, nil)
	return l.Orgs, err
}

// CreateOrg creates an org and an admin token for it (owner).
func (c *Client) CreateOrg(ctx context.Context, req apiv1.CreateOrg) (apiv1.CreatedOrg, error) {
	return get[apiv1.CreatedOrg](ctx, c, apiv1.RouteCreateOrg, nil, nil, req)
}

// LinkOrg links an org to a GitHub account (owner).
func (c *Client) LinkOrg(ctx context.Context, id, githubLogin string, githubID int64) (apiv1.Org, error) {
	return get[apiv1.Org](ctx, c, apiv1.RouteLinkOrg, ids(id), nil, apiv1.CreateOrg{GitHubLogin: githubLogin, GitHubID: githubID})
}

// AuditQuery selects audit entries.
type AuditQuery struct {
	Before int64 // an entry id: the page after it; 0: from the newest
	Limit  int   // 0: the server's default
}

// ListAudit returns the org's audit log, newest first.
func (c *Client) ListAudit(ctx context.Context, q AuditQuery) (apiv1.AuditList, error) {
	v := url.Values{}
	if q.Before > 0 {
		v.Set("before", strconv.FormatInt(q.Before, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	return get[apiv1.AuditList](ctx, c, apiv1.RouteListAudit, nil, v, nil)
}

// ListKeys lists the signing keys (owner).
func (c *Client) ListKeys(ctx context.Context) ([]apiv1.SigningKey, error) {
	l, err := get[apiv1.KeyList](ctx, c, apiv1.RouteListKeys, nil, nil, nil)
	return l.Keys, err
}

// RotateKeys makes a new signing key and returns the keys (owner).
func (c *Client) RotateKeys(ctx context.Context) ([]apiv1.SigningKey, error) {
	l, err := get[apiv1.KeyList](ctx, c, apiv1.RouteRotateKeys, nil, nil, nil)
	return l.Keys, err
}

// RotateWebhookSecret adds a new webhook secret, shown once (owner).
func (c *Client) RotateWebhookSecret(ctx context.Context) (apiv1.WebhookSecret, error) {
	return get[apiv1.WebhookSecret](ctx, c, apiv1.RouteRotateWebhookSecret, nil, nil, nil)
}

// RetireWebhookSecrets keeps only the newest webhook secret (owner).
func (c *Client) RetireWebhookSecrets(ctx context.Context) (apiv1.WebhookSecret, error) {
	return get[apiv1.WebhookSecret](ctx, c, apiv1.RouteRetireWebhookSecrets, nil, nil, nil)
}

// CacheTrust returns what the org trusts to write its build cache.
func (c *Client) CacheTrust(ctx context.Context) (apiv1.CacheTrust, error) {
	return get[apiv1.CacheTrust](ctx, c, apiv1.RouteGetCacheTrust, nil, nil, nil)
}

// SetCacheTrust replaces what the org trusts to write its build cache
// (admin).
func (c *Client) SetCacheTrust(ctx context.Context, t apiv1.CacheTrust) (apiv1.CacheTrust, error) {
	return get[apiv1.CacheTrust](ctx, c, apiv1.RouteSetCacheTrust, nil, nil, t)
}

// RBSCertificate asks for a user certificate over a PEM CSR, for a remote
// Bazel proxy to present to the control plane.
func (c *Client) RBSCertificate(ctx context.Context, csrPEM string) (apiv1.RBSRegistered, error) {
	return get[apiv1.RBSRegistered](ctx, c, apiv1.RouteRBSCertificate, nil, nil, apiv1.RBSCertificate{CSR: csrPEM})
}

// ListSessions lists remote Bazel sessions: the caller's own (an admin's:
// the org's), live ones unless all.
func (c *Client) ListSessions(ctx context.Context, all bool) ([]apiv1.Session, error) {
	var v url.Values
	if all {
		v = url.Values{"all": {"1"}}
	}
	l, err := get[apiv1.SessionList](ctx, c, apiv1.RouteListSessions, nil, v, nil)
	return l.Sessions, err
}

// StopSession stops a remote Bazel session.
func (c *Client) StopSession(ctx context.Context, id string) (apiv1.Session, error) {
	return get[apiv1.Session](ctx, c, apiv1.RouteStopSession, ids(id), nil, nil)
}

// SuggestEgress proposes an allow-list from the egress reports of the
// org's jobs with label (all jobs when empty) over the last days.
func (c *Client) SuggestEgress(ctx context.Context, label string, days int) (apiv1.EgressSuggestion, error) {
	v := url.Values{"days": {strconv.Itoa(days)}}
	if label != "" {
		v.Set("label", label)
	}
	return get[apiv1.EgressSuggestion](ctx, c, apiv1.RouteEgressSuggest, nil, v, nil)
}
