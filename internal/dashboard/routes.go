package dashboard

// Access is what a dashboard route needs of the browser.
type Access string

const (
	// Open: nothing (the sign-in pages, the callback, static assets).
	Open Access = "open"
	// Signed: a live session; its current org is the request's org, and
	// its role there must be allowed the route's Action.
	Signed Access = "signed"
)

// Route is one route of the dashboard: the one place that says its
// method, path, what the browser needs and which policy action it asks
// for. The server registers its handlers from Routes and authorizes each
// request at the edge from it (signed in, CSRF token on every POST,
// policy, step-up); the permission matrix test (matrix_test.go) is
// generated from Routes and apiv1.Routes.
type Route struct {
	Method string
	Path   string
	Access Access
	// Action is what the policy (internal/policy/authz.rego) must allow
	// the session's role in its current org. Every Signed route has one.
	Action string
	// StepUp: the person must have authenticated within the step-up
	// window (sessions.Config.StepUp); otherwise they are asked to again.
	StepUp bool
	// Stream: a Server-Sent Events stream (errors are statuses, not pages).
	Stream bool
}

// Pattern is the route as net/http's ServeMux takes it.
func (r Route) Pattern() string { return r.Method + " " + r.Path }

// StepUpActions are the actions that need a recent authentication from
// a browser: minting credentials, rotating keys and secrets, linking a
// GitHub account (its jobs and code go to the org) and disabling agents.
// TestRoutes checks every route with one of them is StepUp.
var StepUpActions = []string{"tokens.create", "keys.rotate", "orgs.create", "agents.disable"}

// The dashboard's routes. docs/dashboard.md describes each page.
var (
	RouteRoot        = Route{Method: "GET", Path: "/{$}", Access: Open}
	RouteLogin       = Route{Method: "GET", Path: "/login", Access: Open}
	RouteLoginWith   = Route{Method: "GET", Path: "/login/{provider}", Access: Open}
	RouteCallback    = Route{Method: "GET", Path: "/auth/callback", Access: Open}
	RouteAssets      = Route{Method: "GET", Path: "/ui/assets/{name}", Access: Open}
	RouteLogout      = Route{Method: "POST", Path: "/logout", Access: Signed, Action: "dashboard.use"}
	RouteStepUp      = Route{Method: "GET", Path: "/ui/step-up", Access: Signed, Action: "dashboard.use"}
	RouteHome        = Route{Method: "GET", Path: "/ui/{$}", Access: Signed, Action: "dashboard.use"}
	RouteSwitchOrg   = Route{Method: "POST", Path: "/ui/org", Access: Signed, Action: "dashboard.use"}
	RouteJobs        = Route{Method: "GET", Path: "/ui/jobs", Access: Signed, Action: "jobs.read"}
	RouteJobsLive    = Route{Method: "GET", Path: "/ui/jobs/live", Access: Signed, Action: "jobs.read", Stream: true}
	RouteJob         = Route{Method: "GET", Path: "/ui/jobs/{id}", Access: Signed, Action: "jobs.read"}
	RouteJobLive     = Route{Method: "GET", Path: "/ui/jobs/{id}/live", Access: Signed, Action: "jobs.read", Stream: true}
	RouteJobLog      = Route{Method: "GET", Path: "/ui/jobs/{id}/log", Access: Signed, Action: "logs.read", Stream: true}
	RouteJobLogRaw   = Route{Method: "GET", Path: "/ui/jobs/{id}/log.txt", Access: Signed, Action: "logs.read"}
	RouteSearch      = Route{Method: "GET", Path: "/ui/search", Access: Signed, Action: "logs.read"}
	RouteCancelJob   = Route{Method: "POST", Path: "/ui/jobs/{id}/cancel", Access: Signed, Action: "jobs.cancel"}
	RouteAgents      = Route{Method: "GET", Path: "/ui/agents", Access: Signed, Action: "agents.read"}
	RouteDisable     = Route{Method: "POST", Path: "/ui/agents/{id}/disable", Access: Signed, Action: "agents.disable", StepUp: true}
	RouteSessions    = Route{Method: "GET", Path: "/ui/sessions", Access: Signed, Action: "sessions.read"}
	RouteStopSession = Route{Method: "POST", Path: "/ui/sessions/{id}/stop", Access: Signed, Action: "sessions.stop"}
	RouteCache       = Route{Method: "GET", Path: "/ui/cache", Access: Signed, Action: "cache.usage.read"}
	RouteTokens      = Route{Method: "GET", Path: "/ui/tokens", Access: Signed, Action: "tokens.read"}
	RouteNewToken    = Route{Method: "POST", Path: "/ui/tokens", Access: Signed, Action: "tokens.create", StepUp: true}
	RouteRevokeToken = Route{Method: "POST", Path: "/ui/tokens/{id}/revoke", Access: Signed, Action: "tokens.revoke"}
	RouteOrgs        = Route{Method: "GET", Path: "/ui/orgs", Access: Signed, Action: "dashboard.use"}
	RouteLinkOrg     = Route{Method: "POST", Path: "/ui/orgs/{id}/github", Access: Signed, Action: "orgs.create", StepUp: true}
	RouteSettings    = Route{Method: "GET", Path: "/ui/settings", Access: Signed, Action: "keys.read"}
	RouteRotateKeys  = Route{Method: "POST", Path: "/ui/settings/keys/rotate", Access: Signed, Action: "keys.rotate", StepUp: true}
	RouteRotateHook  = Route{Method: "POST", Path: "/ui/settings/webhook-secrets/rotate", Access: Signed, Action: "keys.rotate", StepUp: true}
	RouteAudit       = Route{Method: "GET", Path: "/ui/audit", Access: Signed, Action: "audit.read"}
	RouteInsights    = Route{Method: "GET", Path: "/ui/insights", Access: Signed, Action: "insights.read"}
)

// Routes is every route of the dashboard.
var Routes = []Route{
	RouteRoot, RouteLogin, RouteLoginWith, RouteCallback, RouteAssets, RouteLogout, RouteStepUp, RouteHome, RouteSwitchOrg,
	RouteJobs, RouteJobsLive, RouteJob, RouteJobLive, RouteJobLog, RouteJobLogRaw, RouteSearch, RouteCancelJob,
	RouteAgents, RouteDisable, RouteSessions, RouteStopSession, RouteCache,
	RouteTokens, RouteNewToken, RouteRevokeToken, RouteOrgs, RouteLinkOrg,
	RouteSettings, RouteRotateKeys, RouteRotateHook, RouteAudit, RouteInsights,
}
