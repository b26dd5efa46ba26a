package apiv1

import (
	"fmt"
	"net/url"
	"strings"
)

// Auth is the credential a route takes.
type Auth string

const (
	// AuthNone: no credential (operations), or one the handler checks
	// itself (GitHub's webhook signature).
	AuthNone Auth = "none"
	// AuthJoin: a one-time join token, consumed by enrollment.
	AuthJoin Auth = "join"
	// AuthUser: an API token.
	AuthUser Auth = "user"
	// AuthAgent: an enrolled agent's signed credential.
	AuthAgent Auth = "agent"
)

// Route is one endpoint of the API: the one place that says its method,
// path and what a caller needs. The server registers its handlers from
// Routes and authorizes each request at the edge from it; the typed client
// (internal/apiclient) builds its requests from it; the authorization
// matrix test (internal/api) checks every route against it.
type Route struct {
	Method string
	// Path is a net/http pattern path; {name} is one path segment.
	Path string
	Auth Auth
	// Action is what the policy must allow the caller in its own org
	// before the handler runs (internal/policy/authz.rego). Empty for an
	// AuthUser route: any API token of the org.
	Action string
	// ClientCert: with --rbs-require-client-cert the caller must also
	// present its user certificate of Nimbus's CA (remote Bazel's proxy).
	ClientCert bool
}

// Pattern is the route as net/http's ServeMux takes it.
func (r Route) Pattern() string { return r.Method + " " + r.Path }

// URL is the route's path with its {…} segments set to args, in order,
// each escaped. It panics when the count is wrong: a programming error.
func (r Route) URL(args ...string) string {
	var b strings.Builder
	rest := r.Path
	for _, a := range args {
		i, j := strings.IndexByte(rest, '{'), strings.IndexByte(rest, '}')
		if i < 0 || j < i {
			panic(fmt.Sprintf("apiv1: %s takes fewer than %d arguments", r.Path, len(args)))
		}
		b.WriteString(rest[:i])
		b.WriteString(url.PathEscape(a))
		rest = rest[j+1:]
	}
	if strings.IndexByte(rest, '{') >= 0 {
		panic(fmt.Sprintf("apiv1: %s takes more than %d arguments", r.Path, len(args)))
	}
	b.WriteString(rest)
	return b.String()
}

// The routes of the API. docs/api.md describes each.
var (
	RouteHealthz = Route{Method: "GET", Path: "/healthz", Auth: AuthNone}
	RouteReadyz  = Route{Method: "GET", Path: "/readyz", Auth: AuthNone}
	RouteMetrics = Route{Method: "GET", Path: "/metrics", Auth: AuthNone}
	// RouteGitHubWebhook is authenticated by the delivery's signature.
	RouteGitHubWebhook = Route{Method: "POST", Path: "/webhooks/github", Auth: AuthNone}

	RouteWhoami    = Route{Method: "GET", Path: "/api/v1/whoami", Auth: AuthUser}
	RouteSubmitJob = Route{Method: "POST", Path: "/api/v1/jobs", Auth: AuthUser, Action: "jobs.create"}
	RouteListJobs  = Route{Method: "GET", Path: "/api/v1/jobs", Auth: AuthUser, Action: "jobs.read"}
	RouteGetJob    = Route{Method: "GET", Path: "/api/v1/jobs/{id}", Auth: AuthUser, Action: "jobs.read"}
	RouteCancelJob = Route{Method: "POST", Path: "/api/v1/jobs/{id}/cancel", Auth: AuthUser, Action: "jobs.cancel"}
	RouteJobLogs   = Route{Method: "GET", Path: "/api/v1/jobs/{id}/logs", Auth: AuthUser, Action: "logs.read"}
	// RouteSearchLogs searches the lines of the org's jobs.
	RouteSearchLogs = Route{Method: "GET", Path: "/api/v1/logs/search", Auth: AuthUser, Action: "logs.read"}
	// RouteInsights reports the org's queue and run times, failure rates
	// and flaky jobs (internal/insights).
	RouteInsights = Route{Method: "GET", Path: "/api/v1/insights", Auth: AuthUser, Action: "insights.read"}
	// RouteEgressSuggest reads jobs' egress reports, hence jobs.read.
	RouteEgressSuggest = Route{Method: "GET", Path: "/api/v1/egress/suggest", Auth: AuthUser, Action: "jobs.read"}

	RouteCreateJoinToken = Route{Method: "POST", Path: "/api/v1/agents/join-tokens", Auth: AuthUser, Action: "agents.create_join_token"}
	RouteListAgents      = Route{Method: "GET", Path: "/api/v1/agents", Auth: AuthUser, Action: "agents.read"}
	RouteDisableAgent    = Route{Method: "POST", Path: "/api/v1/agents/{id}/disable", Auth: AuthUser, Action: "agents.disable"}

	// RouteCreateToken: the policy also decides on the new token's role.
	RouteCreateToken = Route{Method: "POST", Path: "/api/v1/tokens", Auth: AuthUser, Action: "tokens.create"}
	RouteListTokens  = Route{Method: "GET", Path: "/api/v1/tokens", Auth: AuthUser, Action: "tokens.read"}
	RouteRevokeToken = Route{Method: "POST", Path: "/api/v1/tokens/{id}/revoke", Auth: AuthUser, Action: "tokens.revoke"}

	RouteListOrgs  = Route{Method: "GET", Path: "/api/v1/orgs", Auth: AuthUser, Action: "orgs.read"}
	RouteCreateOrg = Route{Method: "POST", Path: "/api/v1/orgs", Auth: AuthUser, Action: "orgs.create"}
	RouteLinkOrg   = Route{Method: "POST", Path: "/api/v1/orgs/{id}/github", Auth: AuthUser, Action: "orgs.create"}

	RouteListAudit            = Route{Method: "GET", Path: "/api/v1/audit", Auth: AuthUser, Action: "audit.read"}
	RouteListKeys             = Route{Method: "GET", Path: "/api/v1/keys", Auth: AuthUser, Action: "keys.read"}
	RouteRotateKeys           = Route{Method: "POST", Path: "/api/v1/keys/rotate", Auth: AuthUser, Action: "keys.rotate"}
	RouteRotateWebhookSecret  = Route{Method: "POST", Path: "/api/v1/webhook-secrets/rotate", Auth: AuthUser, Action: "keys.rotate"}
	RouteRetireWebhookSecrets = Route{Method: "POST", Path: "/api/v1/webhook-secrets/retire", Auth: AuthUser, Action: "keys.rotate"}

	RouteGetCacheTrust = Route{Method: "GET", Path: "/api/v1/cache/trust", Auth: AuthUser, Action: "cache.trust.read"}
	RouteSetCacheTrust = Route{Method: "POST", Path: "/api/v1/cache/trust", Auth: AuthUser, Action: "cache.trust.write"}

	// Remote Bazel. The sessions:get and per-session routes are the
	// proxy's (internal/rbs/sessionapi); {action} is "<session id>:heartbeat"
	// or "<session id>:release".
	RouteRBSCertificate = Route{Method: "POST", Path: "/api/v1/rbs/certificate", Auth: AuthUser, Action: "sessions.use"}
	RouteRBSGetServer   = Route{Method: "POST", Path: "/api/v1/rbs/sessions:get", Auth: AuthUser, Action: "sessions.use", ClientCert: true}
	RouteRBSSession     = Route{Method: "POST", Path: "/api/v1/rbs/sessions/{action}", Auth: AuthUser, Action: "sessions.use", ClientCert: true}
	RouteListSessions   = Route{Method: "GET", Path: "/api/v1/sessions", Auth: AuthUser, Action: "sessions.read"}
	// RouteStopSession: the caller's own session, or (sessions.stop) any
	// of the org's; the sessions service decides which.
	RouteStopSession = Route{Method: "POST", Path: "/api/v1/sessions/{id}/stop", Auth: AuthUser, Action: "sessions.read"}

	RouteAgentEnroll      = Route{Method: "POST", Path: PathAgentEnroll, Auth: AuthJoin}
	RouteAgentRefresh     = Route{Method: "POST", Path: PathAgentRefresh, Auth: AuthAgent, Action: "agent.refresh"}
	RouteAgentRegister    = Route{Method: "POST", Path: PathAgentRegister, Auth: AuthAgent, Action: "agent.register"}
	RouteAgentLease       = Route{Method: "POST", Path: PathAgentLease, Auth: AuthAgent, Action: "agent.lease"}
	RouteAgentSync        = Route{Method: "POST", Path: PathAgentSync, Auth: AuthAgent, Action: "agent.sync"}
	RouteAgentStartJob    = Route{Method: "POST", Path: "/api/v1/agent/jobs/{id}/start", Auth: AuthAgent, Action: "agent.report"}
	RouteAgentJobLogs     = Route{Method: "POST", Path: "/api/v1/agent/jobs/{id}/logs", Auth: AuthAgent, Action: "agent.report"}
	RouteAgentCompleteJob = Route{Method: "POST", Path: "/api/v1/agent/jobs/{id}/complete", Auth: AuthAgent, Action: "agent.report"}
	RouteAgentRBSRegister = Route{Method: "POST", Path: PathAgentRBSRegister, Auth: AuthAgent, Action: "agent.sessions"}
	RouteAgentSessions    = Route{Method: "POST", Path: PathAgentSessions, Auth: AuthAgent, Action: "agent.sessions"}
	RouteAgentSession     = Route{Method: "POST", Path: "/api/v1/agent/sessions/{id}/state", Auth: AuthAgent, Action: "agent.sessions"}
)

// Routes is every route of the API.
var Routes = []Route{
	RouteHealthz, RouteReadyz, RouteMetrics, RouteGitHubWebhook,
	RouteWhoami, RouteSubmitJob, RouteListJobs, RouteGetJob, RouteCancelJob, RouteJobLogs, RouteSearchLogs, RouteInsights, RouteEgressSuggest,
	RouteCreateJoinToken, RouteListAgents, RouteDisableAgent,
	RouteCreateToken, RouteListTokens, RouteRevokeToken,
	RouteListOrgs, RouteCreateOrg, RouteLinkOrg,
	RouteListAudit, RouteListKeys, RouteRotateKeys, RouteRotateWebhookSecret, RouteRetireWebhookSecrets,
	RouteGetCacheTrust, RouteSetCacheTrust,
	RouteRBSCertificate, RouteRBSGetServer, RouteRBSSession, RouteListSessions, RouteStopSession,
	RouteAgentEnroll, RouteAgentRefresh, RouteAgentRegister, RouteAgentLease, RouteAgentSync,
	RouteAgentStartJob, RouteAgentJobLogs, RouteAgentCompleteJob,
	RouteAgentRBSRegister, RouteAgentSessions, RouteAgentSession,
}
