package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/dashboard"
	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/policy"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/websession"
)

// uiMinRole is the weakest role that may use each signed-in dashboard
// route, written out here rather than read from the policy, so that a
// route declaring the wrong action shows. A route missing here fails
// TestPermissionMatrix: every new route gets an entry, and a policy
// action.
var uiMinRole = map[string]auth.Role{
	dashboard.RouteLogout.Pattern():      auth.RoleViewer,
	dashboard.RouteStepUp.Pattern():      auth.RoleViewer,
	dashboard.RouteHome.Pattern():        auth.RoleViewer,
	dashboard.RouteSwitchOrg.Pattern():   auth.RoleViewer,
	dashboard.RouteJobs.Pattern():        auth.RoleViewer,
	dashboard.RouteJobsLive.Pattern():    auth.RoleViewer,
	dashboard.RouteJob.Pattern():         auth.RoleViewer,
	dashboard.RouteJobLive.Pattern():     auth.RoleViewer,
	dashboard.RouteJobLog.Pattern():      auth.RoleViewer,
	dashboard.RouteJobLogRaw.Pattern():   auth.RoleViewer,
	dashboard.RouteSearch.Pattern():      auth.RoleViewer,
	dashboard.RouteCancelJob.Pattern():   auth.RoleDeveloper,
	dashboard.RouteAgents.Pattern():      auth.RoleViewer,
	dashboard.RouteDisable.Pattern():     auth.RoleAdmin,
	dashboard.RouteSessions.Pattern():    auth.RoleViewer,
	dashboard.RouteStopSession.Pattern(): auth.RoleAdmin,
	dashboard.RouteCache.Pattern():       auth.RoleViewer,
	dashboard.RouteTokens.Pattern():      auth.RoleAdmin,
	dashboard.RouteNewToken.Pattern():    auth.RoleAdmin,
	dashboard.RouteRevokeToken.Pattern(): auth.RoleAdmin,
	dashboard.RouteOrgs.Pattern():        auth.RoleViewer,
	dashboard.RouteLinkOrg.Pattern():     auth.RoleOwner,
	dashboard.RouteSettings.Pattern():    auth.RoleOwner,
	dashboard.RouteRotateKeys.Pattern():  auth.RoleOwner,
	dashboard.RouteRotateHook.Pattern():  auth.RoleOwner,
	dashboard.RouteAudit.Pattern():       auth.RoleAdmin,
	dashboard.RouteInsights.Pattern():    auth.RoleViewer,
}

// The roles, as the dashboard maps them (docs/dashboard.md):
// owner, admin, member (developer) and viewer; ci is a role for tokens.
var matrixRoles = []auth.Role{auth.RoleViewer, auth.RoleDeveloper, auth.RoleAdmin, auth.RoleOwner}

// world is what the matrix acts on: org a's resources (each route names
// one) and org b's, whose ids must never show to org a.
type world struct {
	*env
	job, agent, token     map[string]string // org a or b → id
	agentCred             string            // org a's agent
	apiTokens             map[auth.Role]string
	expiredToken, tokenB  string
	victimJob, victimAgnt string // org a's, for the API's state changes
	victimToken           string
	cacheRowA             string // the cache page's row of org a
}

func newWorld(t *testing.T) *world {
	e := newEnv(t)
	ctx := context.Background()
	w := &world{env: e, job: map[string]string{}, agent: map[string]string{}, token: map[string]string{}, apiTokens: map[auth.Role]string{}}
	clients := map[string]string{"a": e.h.OwnerToken, "b": e.tokenB}
	w.apiTokens[auth.RoleOwner] = e.h.OwnerToken
	for _, r := range []auth.Role{auth.RoleViewer, auth.RoleDeveloper, auth.RoleCI, auth.RoleAdmin} {
		var tok apiv1.Token
		mustDo(t, e, e.h.OwnerToken, "POST", "/api/v1/tokens", apiv1.CreateToken{Name: "matrix-" + string(r), Role: string(r)}, &tok)
		w.apiTokens[r] = tok.Secret
	}
	w.tokenB = e.tokenB
	for _, org := range []string{"a", "b"} {
		var j apiv1.Job
		mustDo(t, e, clients[org], "POST", "/api/v1/jobs", apiv1.SubmitJob{Argv: []string{"echo", "org-" + org}}, &j)
		w.job[org] = j.ID
		var jt apiv1.JoinToken
		mustDo(t, e, clients[org], "POST", "/api/v1/agents/join-tokens", apiv1.CreateJoinToken{Labels: []string{"linux"}}, &jt)
		var en apiv1.Enrolled
		mustDo(t, e, jt.Token, "POST", "/api/v1/agent/enroll", apiv1.Enroll{Name: "agent-" + org, MaxJobs: 1}, &en)
		w.agent[org] = en.AgentID
		if org == "a" {
			w.agentCred = en.Credential
		}
		var tok apiv1.Token
		mustDo(t, e, clients[org], "POST", "/api/v1/tokens", apiv1.CreateToken{Name: "victim-" + org, Role: "viewer"}, &tok)
		w.token[org] = tok.ID
	}
	var j apiv1.Job
	mustDo(t, e, e.h.OwnerToken, "POST", "/api/v1/jobs", apiv1.SubmitJob{Argv: []string{"true"}, Labels: []string{"gpu"}}, &j)
	w.victimJob = j.ID
	var jt apiv1.JoinToken
	mustDo(t, e, w.apiTokens[auth.RoleAdmin], "POST", "/api/v1/agents/join-tokens", apiv1.CreateJoinToken{Labels: []string{"x"}}, &jt)
	var en apiv1.Enrolled
	mustDo(t, e, jt.Token, "POST", "/api/v1/agent/enroll", apiv1.Enroll{Name: "victim", MaxJobs: 1}, &en)
	w.victimAgnt = en.AgentID
	var tok apiv1.Token
	mustDo(t, e, e.h.OwnerToken, "POST", "/api/v1/tokens", apiv1.CreateToken{Name: "victim-api", Role: "viewer"}, &tok)
	w.victimToken = tok.ID
	// An API token that expired.
	secret, hash := auth.NewSecret(auth.APITokenPrefix)
	if err := e.h.CP.Store.Tokens().CreateAPIToken(ctx, store.APIToken{ID: ids.New("tok"), OrgID: e.orgA, Name: "expired", Role: "owner",
		Hash: hash, CreatedBy: "test", CreatedAt: time.Now().Add(-2 * time.Hour), ExpiresAt: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	w.expiredToken = secret
	orgA, err := e.h.CP.Store.Orgs().Get(ctx, e.orgA)
	if err != nil {
		t.Fatal(err)
	}
	w.cacheRowA = `data-testid="cache-` + orgA.Name + `"`
	return w
}

func mustDo(t *testing.T, e *env, token, method, path string, in, out any) {
	t.Helper()
	if _, err := e.h.Client(token).Do(context.Background(), method, path, in, out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

// uiPath fills a dashboard route's {…} with org a's resource.
func (w *world) uiPath(rt dashboard.Route) string {
	p := rt.Path
	r := strings.NewReplacer("{$}", "", "{name}", "app.js", "{provider}", "corp")
	p = r.Replace(p)
	if !strings.Contains(p, "{id}") {
		return p
	}
	id := ""
	switch {
	case strings.HasPrefix(p, "/ui/jobs/"):
		id = w.job["a"]
	case strings.HasPrefix(p, "/ui/agents/"):
		id = w.victimAgnt // enrolled by an admin: admins may disable it
	case strings.HasPrefix(p, "/ui/tokens/"):
		id = w.token["a"]
	case strings.HasPrefix(p, "/ui/orgs/"):
		id = w.orgA
	case strings.HasPrefix(p, "/ui/sessions/"):
		id = "ses_00000000000000000000000000"
	default:
		panic("no resource for " + p)
	}
	return strings.Replace(p, "{id}", id, 1)
}

// form is a plausible body for a dashboard POST.
func (w *world) form(rt dashboard.Route, csrf string) url.Values {
	v := url.Values{"csrf": {csrf}}
	switch rt {
	case dashboard.RouteNewToken:
		v.Set("name", "from-matrix")
		v.Set("role", "viewer")
		v.Set("expires", "1d")
	case dashboard.RouteLinkOrg:
		v.Set("github_login", "matrix-org")
		v.Set("github_id", "4242")
	case dashboard.RouteSwitchOrg:
		v.Set("org", w.orgA)
	}
	return v
}

// result is what a call answered.
type result struct {
	status int
	header http.Header
	body   string
}

func (w *world) callUI(t *testing.T, rt dashboard.Route, cookie *http.Cookie, csrf string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var body io.Reader
	if rt.Method == "POST" {
		body = strings.NewReader(w.form(rt, csrf).Encode())
	}
	req, _ := http.NewRequestWithContext(ctx, rt.Method, w.h.URL+w.uiPath(rt), body)
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", rt.Pattern(), err)
	}
	defer resp.Body.Close()
	var b []byte
	if rt.Stream && resp.StatusCode == 200 {
		// A live stream (which may send nothing yet): what it sends in a
		// moment is enough.
		stop := time.AfterFunc(200*time.Millisecond, cancel)
		defer stop.Stop()
		b, _ = io.ReadAll(resp.Body)
	} else {
		b, _ = io.ReadAll(resp.Body)
	}
	if resp.StatusCode >= 500 {
		t.Errorf("%s: %d %.300s", rt.Pattern(), resp.StatusCode, b)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (w *world) csrfOf(t *testing.T, c *http.Cookie) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "/", nil)
	req.AddCookie(c)
	s, err := w.h.CP.Web.Load(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return w.h.CP.Web.CSRFToken(s)
}

// The permission matrix, generated from the dashboard's routes and the
// API's: every route × {owner, admin, member, viewer, a member of another
// org, signed out, an expired session, a wrong CSRF token} (and for the
// API, its credentials: API tokens of each role, another org's, an
// expired one, none, an agent's, and a browser's session cookie).
func TestPermissionMatrix(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	pol, err := policy.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	allowed := func(role auth.Role, action string) bool {
		return pol.Authorize(ctx, auth.Principal{Kind: auth.KindUser, Org: "o", Role: role}, action, policy.Resource{Org: "o"}) == nil
	}
	t.Run("ui", func(t *testing.T) {
		for _, rt := range dashboard.Routes {
			t.Run(rt.Pattern(), func(t *testing.T) { w.uiRoute(t, rt, allowed) })
		}
	})
	t.Run("api", func(t *testing.T) {
		for _, rt := range apiv1.Routes {
			t.Run(rt.Pattern(), func(t *testing.T) { w.apiRoute(t, rt, allowed) })
		}
	})
}

func (w *world) uiRoute(t *testing.T, rt dashboard.Route, allowed func(auth.Role, string) bool) {
	if rt.Access == dashboard.Open {
		for name, c := range map[string]*http.Cookie{"signed out": nil, "owner": w.sessionAs(w.orgA, auth.RoleOwner)} {
			r := w.callUI(t, rt, c, "")
			want := r.status < 400
			if rt == dashboard.RouteCallback {
				want = r.status == http.StatusBadRequest // no sign-in in progress
			}
			if !want {
				t.Errorf("%s on an open route: %d", name, r.status)
			}
		}
		return
	}
	min, ok := uiMinRole[rt.Pattern()]
	if !ok {
		t.Fatalf("%s is not in the matrix's table (uiMinRole): add it, with its policy action", rt.Pattern())
	}
	if rt.Action == "" || !allowed(auth.RoleOwner, rt.Action) {
		t.Fatalf("%s: action %q has no policy entry (min_role in authz.rego)", rt.Pattern(), rt.Action)
	}
	for _, role := range auth.Roles {
		if allowed(role, rt.Action) != (rank(role) >= rank(min)) {
			t.Errorf("%s: the policy's answer for %s (%v) is not the table's (min %s): wrong action %q?", rt.Pattern(), role, allowed(role, rt.Action), min, rt.Action)
		}
	}
	signedOut := func(name string, r result) {
		t.Helper()
		if rt.Method == "GET" && !rt.Stream {
			if r.status != http.StatusSeeOther || !strings.HasPrefix(r.header.Get("Location"), "/login?") {
				t.Errorf("%s: %d to %q, want a redirect to sign in", name, r.status, r.header.Get("Location"))
			}
		} else if r.status != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, r.status)
		}
	}
	// Refusals first: they change nothing.
	signedOut("signed out", w.callUI(t, rt, nil, ""))
	expired := w.session([]websession.OrgRole{{Org: w.orgA, Role: auth.RoleOwner}}, w.orgA, time.Now(), time.Now().Add(-time.Minute))
	signedOut("expired session", w.callUI(t, rt, expired, "x"))
	forged := &http.Cookie{Name: w.h.CP.Web.CookieName(), Value: "forged-session-secret-that-names-nothing-at-all"}
	signedOut("unknown session", w.callUI(t, rt, forged, "x"))
	if rt.Method == "POST" {
		owner := w.sessionAs(w.orgA, auth.RoleOwner)
		other := w.sessionAs(w.orgB, auth.RoleOwner)
		for name, tok := range map[string]string{"no CSRF token": "", "a wrong CSRF token": wrongCSRF(w.csrfOf(t, owner)),
			"another session's CSRF token": w.csrfOf(t, other)} {
			if r := w.callUI(t, rt, owner, tok); r.status != http.StatusForbidden || r.header.Get("Nimbus-Refusal") != "csrf" {
				t.Errorf("owner with %s: %d %q, want 403 csrf", name, r.status, r.header.Get("Nimbus-Refusal"))
			}
		}
	}
	// A member of another org, acting in their org, on org a's resource.
	for _, role := range matrixRoles {
		c := w.sessionAs(w.orgB, role)
		r := w.callUI(t, rt, c, w.csrfOf(t, c))
		switch {
		case !allowed(role, rt.Action):
			if r.status != http.StatusForbidden {
				t.Errorf("org b %s: %d, want 403", role, r.status)
			}
		case strings.Contains(rt.Path, "{id}"):
			if r.status != http.StatusNotFound {
				t.Errorf("org b %s on org a's resource: %d, want 404", role, r.status)
			}
		default:
			for _, leak := range []string{w.job["a"], w.agent["a"], w.token["a"], w.victimJob} {
				if strings.Contains(r.body, leak) {
					t.Errorf("org b %s sees org a's %s", role, leak)
				}
			}
			// Cache usage: only owners (orgs.read) see every org's.
			if rt == dashboard.RouteCache && !allowed(role, "orgs.read") && strings.Contains(r.body, w.cacheRowA) {
				t.Errorf("org b %s sees org a's cache usage", role)
			}
		}
	}
	// A stale session (signed in long ago) on a step-up route.
	if rt.StepUp {
		stale := w.session([]websession.OrgRole{{Org: w.orgA, Role: auth.RoleOwner}}, w.orgA, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		if r := w.callUI(t, rt, stale, w.csrfOf(t, stale)); r.status != http.StatusForbidden || r.header.Get("Nimbus-Step-Up") != "required" {
			t.Errorf("stale owner session: %d %q, want 403 step-up", r.status, r.header.Get("Nimbus-Step-Up"))
		}
	}
	// Org a's roles, weakest first.
	for _, role := range matrixRoles {
		c := w.sessionAs(w.orgA, role)
		r := w.callUI(t, rt, c, w.csrfOf(t, c))
		if rt == dashboard.RouteCache && !strings.Contains(r.body, w.cacheRowA) {
			t.Errorf("%s does not see its own org's cache usage (%s)", role, w.cacheRowA)
		}
		if allowed(role, rt.Action) {
			if r.status == http.StatusUnauthorized || r.status == http.StatusForbidden {
				t.Errorf("%s: %d %s, want allowed", role, r.status, r.header.Get("Nimbus-Refusal"))
			}
		} else if r.status != http.StatusForbidden || r.header.Get("Nimbus-Refusal") != "policy" {
			t.Errorf("%s: %d, want 403 (policy)", role, r.status)
		}
	}
}

// wrongCSRF is tok with its first character changed (to one it is not:
// replacing it with a fixed one left a token starting with it valid).
func wrongCSRF(tok string) string {
	if tok[0] == 'x' {
		return "y" + tok[1:]
	}
	return "x" + tok[1:]
}

func rank(r auth.Role) int { return slices.Index(auth.Roles, r) }

// apiPath fills an API route's {…} with org a's resource.
func (w *world) apiPath(rt apiv1.Route) string {
	if !strings.Contains(rt.Path, "{") {
		return rt.Path
	}
	switch {
	case strings.HasPrefix(rt.Path, "/api/v1/jobs/"):
		if rt == apiv1.RouteCancelJob {
			return rt.URL(w.victimJob)
		}
		return rt.URL(w.job["a"])
	case strings.HasPrefix(rt.Path, "/api/v1/agent/jobs/"):
		return rt.URL(w.job["a"])
	case strings.HasPrefix(rt.Path, "/api/v1/agents/"):
		return rt.URL(w.victimAgnt)
	case strings.HasPrefix(rt.Path, "/api/v1/tokens/"):
		return rt.URL(w.victimToken)
	case strings.HasPrefix(rt.Path, "/api/v1/orgs/"):
		return rt.URL(w.orgA)
	case strings.HasPrefix(rt.Path, "/api/v1/rbs/sessions/"):
		return rt.URL("ses_00000000000000000000000000:heartbeat")
	case strings.HasPrefix(rt.Path, "/api/v1/sessions/"), strings.HasPrefix(rt.Path, "/api/v1/agent/sessions/"):
		return rt.URL("ses_00000000000000000000000000")
	}
	panic("no resource for " + rt.Path)
}

func (w *world) callAPI(t *testing.T, rt apiv1.Route, bearer string, cookie *http.Cookie) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var body io.Reader
	if rt.Method == "POST" {
		b, _ := json.Marshal(struct{}{})
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(ctx, rt.Method, w.h.URL+w.apiPath(rt), body)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", rt.Pattern(), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("%s: %d %.300s", rt.Pattern(), resp.StatusCode, b)
	}
	return result{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (w *world) apiRoute(t *testing.T, rt apiv1.Route, allowed func(auth.Role, string) bool) {
	owner := w.sessionAs(w.orgA, auth.RoleOwner)
	if rt.Auth == apiv1.AuthNone {
		return // open (health, metrics, webhooks): internal/api's matrix
	}
	// Credentials that are no credential here.
	for name, r := range map[string]result{
		"no credential":              w.callAPI(t, rt, "", nil),
		"an expired token":           w.callAPI(t, rt, w.expiredToken, nil),
		"a signed-in owner's cookie": w.callAPI(t, rt, "", owner),
		"a forged token":             w.callAPI(t, rt, "nmbu_"+strings.Repeat("a", 32), nil),
	} {
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, r.status)
		}
	}
	switch rt.Auth {
	case apiv1.AuthJoin:
		if r := w.callAPI(t, rt, w.apiTokens[auth.RoleOwner], nil); r.status != http.StatusUnauthorized {
			t.Errorf("an API token on enrollment: %d, want 401", r.status)
		}
		return
	case apiv1.AuthAgent:
		for role, tok := range w.apiTokens {
			if r := w.callAPI(t, rt, tok, nil); r.status != http.StatusForbidden {
				t.Errorf("%s token on an agent route: %d, want 403", role, r.status)
			}
		}
		return
	}
	// A user route names a policy action the policy knows (whoami alone
	// needs none: it answers who the caller is).
	if rt.Action == "" && rt != apiv1.RouteWhoami {
		t.Fatalf("%s has no policy action: give it one (and a min_role in authz.rego)", rt.Pattern())
	}
	if rt.Action != "" && !allowed(auth.RoleOwner, rt.Action) {
		t.Fatalf("%s: action %q has no policy entry (min_role in authz.rego)", rt.Pattern(), rt.Action)
	}
	if r := w.callAPI(t, rt, w.agentCred, nil); r.status != http.StatusForbidden {
		t.Errorf("an agent credential: %d, want 403", r.status)
	}
	// Org b's admin reading a list sees none of org a's resources.
	if rt.Method == "GET" && !strings.Contains(rt.Path, "{") {
		r := w.callAPI(t, rt, w.tokenB, nil)
		for _, leak := range []string{w.job["a"], w.agent["a"], w.token["a"], w.victimJob, w.victimAgnt, w.victimToken} {
			if strings.Contains(r.body, leak) {
				t.Errorf("org b admin sees org a's %s: %.300s", leak, r.body)
			}
		}
	}
	// Org b's admin on org a's resource.
	if strings.Contains(rt.Path, "{") {
		r := w.callAPI(t, rt, w.tokenB, nil)
		if rt.Action == "" || allowed(auth.RoleAdmin, rt.Action) {
			if r.status != http.StatusNotFound {
				t.Errorf("org b admin on org a's resource: %d, want 404", r.status)
			}
		} else if r.status != http.StatusForbidden {
			t.Errorf("org b admin: %d, want 403", r.status)
		}
	}
	for _, role := range auth.Roles {
		r := w.callAPI(t, rt, w.apiTokens[role], nil)
		want := rt.Action == "" || allowed(role, rt.Action)
		if denied := r.status == http.StatusUnauthorized || r.status == http.StatusForbidden; denied == want {
			t.Errorf("%s: %d, allowed by the table and policy: %v", role, r.status, want)
		}
	}
}

// Every dashboard route is mounted on the server's listener, declared
// once, and its step-up matches the actions that need one.
func TestRoutes(t *testing.T) {
	seen := map[string]bool{}
	mux := http.NewServeMux()
	for _, rt := range dashboard.Routes {
		if seen[rt.Pattern()] {
			t.Errorf("%s listed twice", rt.Pattern())
		}
		seen[rt.Pattern()] = true
		mux.Handle(rt.Pattern(), http.NotFoundHandler())
		if rt.Access == dashboard.Signed && rt.Action == "" {
			t.Errorf("%s: a signed-in route without an action", rt.Pattern())
		}
		if rt.Access == dashboard.Open && (rt.Action != "" || rt.StepUp) {
			t.Errorf("%s: an open route with an action or step-up", rt.Pattern())
		}
		if slices.Contains(dashboard.StepUpActions, rt.Action) != rt.StepUp {
			t.Errorf("%s: action %s, step-up %v: StepUpActions says otherwise", rt.Pattern(), rt.Action, rt.StepUp)
		}
		mounted := false
		for _, m := range dashboard.MountPatterns {
			p := strings.TrimSuffix(strings.TrimSuffix(rt.Path, "{$}"), "{$}")
			if p == m || (strings.HasSuffix(m, "/") && strings.HasPrefix(p, m)) || (m == "/{$}" && p == "/") {
				mounted = true
			}
		}
		if !mounted {
			t.Errorf("%s is under none of MountPatterns", rt.Pattern())
		}
	}
}
