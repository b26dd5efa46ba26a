package api_test

import (
	"context"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/policy"
)

// world is two orgs with a token of every role in each and one of each
// resource per org.
type world struct {
	h      *apptest.Harness
	tokens map[string]map[auth.Role]*apiclient.Client // org name -> role -> client
	orgID  map[string]string
	job    map[string]string
	agent  map[string]string
	agentC map[string]*apiclient.Client
	token  map[string]string
}

func newWorld(t *testing.T) *world {
	ctx := context.Background()
	h := apptest.Start(t, "sqlite")
	w := &world{h: h, tokens: map[string]map[auth.Role]*apiclient.Client{}, orgID: map[string]string{}, job: map[string]string{},
		agent: map[string]string{}, agentC: map[string]*apiclient.Client{}, token: map[string]string{}}
	w.orgID["a"] = h.OrgID
	w.tokens["a"] = map[auth.Role]*apiclient.Client{auth.RoleOwner: h.Owner()}
	var b apiv1.CreatedOrg
	must(t, h.Owner(), "POST", "/api/v1/orgs", apiv1.CreateOrg{Name: "b"}, &b)
	w.orgID["b"] = b.Org.ID
	w.tokens["b"] = map[auth.Role]*apiclient.Client{auth.RoleAdmin: h.Client(b.AdminToken.Secret)}
	for _, org := range []string{"a", "b"} {
		creator := w.tokens[org][auth.RoleOwner]
		if creator == nil {
			creator = w.tokens[org][auth.RoleAdmin]
		}
		for _, role := range []auth.Role{auth.RoleViewer, auth.RoleDeveloper, auth.RoleCI, auth.RoleAdmin} {
			if w.tokens[org][role] != nil {
				continue
			}
			var tok apiv1.Token
			must(t, creator, "POST", "/api/v1/tokens", apiv1.CreateToken{Name: string(role), Role: string(role)}, &tok)
			w.tokens[org][role] = h.Client(tok.Secret)
			w.token[org] = tok.ID
		}
		var j apiv1.Job
		must(t, w.tokens[org][auth.RoleDeveloper], "POST", "/api/v1/jobs", apiv1.SubmitJob{Argv: []string{"true"}}, &j)
		w.job[org] = j.ID
		// The agent is an admin's: admins and owners manage it.
		var jt apiv1.JoinToken
		must(t, w.tokens[org][auth.RoleAdmin], "POST", "/api/v1/agents/join-tokens", apiv1.CreateJoinToken{Labels: []string{"linux"}}, &jt)
		var en apiv1.Enrolled
		must(t, h.Client(jt.Token), "POST", "/api/v1/agent/enroll", apiv1.Enroll{Name: "agent-" + org, MaxJobs: 1}, &en)
		w.agent[org] = en.AgentID
		w.agentC[org] = h.Client(en.Credential)
	}
	_ = ctx
	return w
}

func must(t *testing.T, c *apiclient.Client, method, path string, in, out any) {
	t.Helper()
	if _, err := c.Do(context.Background(), method, path, in, out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

func status(t *testing.T, c *apiclient.Client, method, path string, in any) int {
	t.Helper()
	code, err := c.Do(context.Background(), method, path, in, nil)
	var ae *apiclient.Error
	if err != nil {
		if !asAPIError(err, &ae) {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		if ae.Status >= 500 && ae.Status != http.StatusServiceUnavailable {
			t.Errorf("%s %s: %d %s", method, path, ae.Status, ae.Message)
		}
		return ae.Status
	}
	return code
}

func asAPIError(err error, target **apiclient.Error) bool {
	e, ok := err.(*apiclient.Error)
	if ok {
		*target = e
	}
	return ok
}

// endpoint is a route acting on one org's resource, and the weakest role
// that may use it (written out here, not read from the policy, so that a
// wrong action in the route table shows).
type endpoint struct {
	route apiv1.Route
	body  any
	min   auth.Role
}

var resourceEndpoints = []endpoint{
	{apiv1.RouteGetJob, nil, auth.RoleViewer},
	{apiv1.RouteJobLogs, nil, auth.RoleViewer},
	{apiv1.RouteCancelJob, struct{}{}, auth.RoleDeveloper},
	{apiv1.RouteDisableAgent, struct{}{}, auth.RoleAdmin},
	{apiv1.RouteRevokeToken, struct{}{}, auth.RoleAdmin},
	{apiv1.RouteLinkOrg, apiv1.CreateOrg{GitHubLogin: "x", GitHubID: 99}, auth.RoleOwner},
}

// Routes on one resource tested elsewhere: TestMatrixSessions.
var resourceRoutesElsewhere = []apiv1.Route{apiv1.RouteStopSession, apiv1.RouteRBSSession}

// Every API token route on one resource is in the resource matrix.
func TestResourceMatrixCoversTheTable(t *testing.T) {
	covered := map[string]bool{}
	for _, ep := range resourceEndpoints {
		covered[ep.route.Pattern()] = true
	}
	for _, r := range resourceRoutesElsewhere {
		covered[r.Pattern()] = true
	}
	for _, r := range apiv1.Routes {
		if r.Auth == apiv1.AuthUser && strings.Contains(r.Path, "{") && !covered[r.Pattern()] {
			t.Errorf("%s acts on a resource but is not in resourceEndpoints", r.Pattern())
		}
	}
}

// Every endpoint that names a resource refuses every role of another org
// (404: not even its existence leaks) and every role weaker than its
// minimum inside the org (403).
func TestMatrixResources(t *testing.T) {
	rank := map[auth.Role]int{}
	for i, r := range auth.Roles {
		rank[r] = i
	}
	for _, ep := range resourceEndpoints {
		t.Run(ep.route.Pattern(), func(t *testing.T) {
			// A fresh world per endpoint: a successful cancel or revoke
			// must not change what the next case sees.
			w := newWorld(t)
			target := ep.route.URL(w.resourceFor(ep.route)) // org a's
			// Attacks first: org b's every role on org a's resource.
			for role, c := range w.tokens["b"] {
				got := status(t, c, ep.route.Method, target, ep.body)
				if got < 400 {
					t.Errorf("org b %s on org a's resource: %d, want refusal", role, got)
				}
				if rank[role] >= rank[ep.min] && got != http.StatusNotFound {
					t.Errorf("org b %s on org a's resource: %d, want 404", role, got)
				}
			}
			// An agent credential is not an API token.
			if got := status(t, w.agentC["a"], ep.route.Method, target, ep.body); got != http.StatusForbidden {
				t.Errorf("agent credential: %d, want 403", got)
			}
			// Inside org a, weakest role first.
			for _, role := range auth.Roles {
				c := w.tokens["a"][role]
				got := status(t, c, ep.route.Method, target, ep.body)
				want := rank[role] >= rank[ep.min]
				if (got < 300) != want {
					t.Errorf("org a %s: %d, allowed=%v", role, got, want)
				}
			}
		})
	}
}

// Collections only ever show the caller's org.
func TestMatrixCollections(t *testing.T) {
	w := newWorld(t)
	for _, tc := range []struct {
		path string
		min  auth.Role
		key  func(w *world, org string) string
	}{
		{"/api/v1/jobs", auth.RoleViewer, func(w *world, org string) string { return w.job[org] }},
		{"/api/v1/agents", auth.RoleViewer, func(w *world, org string) string { return w.agent[org] }},
		{"/api/v1/tokens", auth.RoleAdmin, func(w *world, org string) string { return w.token[org] }},
		{"/api/v1/audit", auth.RoleAdmin, func(w *world, org string) string { return w.job[org] }},
	} {
		for _, org := range []string{"a", "b"} {
			other := map[string]string{"a": "b", "b": "a"}[org]
			for role, c := range w.tokens[org] {
				resp, err := c.Raw(context.Background(), "GET", tc.path, nil)
				allowed := role == auth.RoleOwner || rankOf(role) >= rankOf(tc.min)
				if !allowed {
					if !apiclient.IsStatus(err, http.StatusForbidden) {
						t.Errorf("%s by %s/%s: %v, want 403", tc.path, org, role, err)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s by %s/%s: %v", tc.path, org, role, err)
					continue
				}
				body := readAll(resp)
				if strings.Contains(body, tc.key(w, other)) {
					t.Errorf("%s by %s/%s shows org %s's %s", tc.path, org, role, other, tc.key(w, other))
				}
				if !strings.Contains(body, tc.key(w, org)) {
					t.Errorf("%s by %s/%s does not show its own %s", tc.path, org, role, tc.key(w, org))
				}
			}
		}
	}
	// Owner-only, installation-wide endpoints refuse every org admin.
	for _, p := range []string{"/api/v1/orgs", "/api/v1/keys"} {
		if got := status(t, w.tokens["b"][auth.RoleAdmin], "GET", p, nil); got != http.StatusForbidden {
			t.Errorf("GET %s by org b admin: %d, want 403", p, got)
		}
	}
	for _, p := range []string{"/api/v1/keys/rotate", "/api/v1/webhook-secrets/rotate", "/api/v1/webhook-secrets/retire"} {
		if got := status(t, w.tokens["a"][auth.RoleAdmin], "POST", p, struct{}{}); got != http.StatusForbidden {
			t.Errorf("POST %s by admin: %d, want 403", p, got)
		}
	}
	// A token cannot mint a stronger one.
	if got := status(t, w.tokens["b"][auth.RoleAdmin], "POST", "/api/v1/tokens", apiv1.CreateToken{Name: "x", Role: "owner"}); got != http.StatusForbidden {
		t.Errorf("admin minting an owner token: %d, want 403", got)
	}
	if got := status(t, w.tokens["a"][auth.RoleDeveloper], "POST", "/api/v1/jobs", apiv1.SubmitJob{Argv: []string{"x"}}); got != http.StatusCreated {
		t.Errorf("developer submits: %d", got)
	}
	if got := status(t, w.tokens["a"][auth.RoleViewer], "POST", "/api/v1/jobs", apiv1.SubmitJob{Argv: []string{"x"}}); got != http.StatusForbidden {
		t.Errorf("viewer submits: %d, want 403", got)
	}
}

// An agent of one org can neither see nor report on another org's jobs.
func TestMatrixAgents(t *testing.T) {
	w := newWorld(t)
	// Agent b asks for work: it must never get org a's job.
	var lease apiv1.Lease
	code, err := w.agentC["b"].Do(context.Background(), "POST", "/api/v1/agent/lease", apiv1.LeaseRequest{}, &lease)
	if err != nil {
		t.Fatal(err)
	}
	if code == http.StatusOK && lease.Job.Org != w.orgID["b"] {
		t.Errorf("agent b leased org %s's job", lease.Job.Org)
	}
	for _, op := range []string{"start", "logs", "complete"} {
		var body any = apiv1.Fenced{Fence: 1}
		switch op {
		case "logs":
			body = apiv1.Logs{Fence: 1, Chunks: []apiv1.LogChunk{{Seq: 0, Data: []byte("forged")}}}
		case "complete":
			body = apiv1.Complete{Fence: 1, State: "succeeded"}
		}
		if got := status(t, w.agentC["b"], "POST", apiv1.PathAgentJob(w.job["a"], op), body); got < 400 {
			t.Errorf("agent b %s on org a's job: %d", op, got)
		}
	}
	// An API token cannot use the agent API.
	if got := status(t, w.tokens["a"][auth.RoleOwner], "POST", "/api/v1/agent/lease", apiv1.LeaseRequest{}); got != http.StatusForbidden {
		t.Errorf("owner token on the agent API: %d, want 403", got)
	}
}

func rankOf(r auth.Role) int {
	for i, x := range auth.Roles {
		if x == r {
			return i
		}
	}
	return -1
}

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

// The route table and docs/api.md list the same routes.
func TestRoutesAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	norm := regexp.MustCompile(`\{[a-z]+\}`)
	documented := map[string]bool{}
	re := regexp.MustCompile("`(GET|POST) (/[^` ?,]*)")
	for _, m := range re.FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]+" "+norm.ReplaceAllString(m[2], "{}")] = true
	}
	// The proxy's per-session calls are documented as {id}:heartbeat.
	documented["POST /api/v1/rbs/sessions/{}"] = documented["POST /api/v1/rbs/sessions/{}:heartbeat"]
	delete(documented, "POST /api/v1/rbs/sessions/{}:heartbeat")
	inTable := map[string]bool{}
	for _, r := range apiv1.Routes {
		k := r.Method + " " + norm.ReplaceAllString(r.Path, "{}")
		inTable[k] = true
		if !documented[k] {
			t.Errorf("route %s is not in docs/api.md", r.Pattern())
		}
	}
	for k := range documented {
		if !inTable[k] {
			t.Errorf("docs/api.md documents %s, which is not in apiv1.Routes", k)
		}
	}
}

// Every route of the table is authorized at the edge as it says: an API
// token route refuses no credential (401) and an agent credential (403)
// and lets each role of the org through exactly when the policy allows
// the route's action; an agent route refuses no credential and API
// tokens; enrollment takes only a join token. Each route runs in a fresh
// world, weakest role first, so what one call changes does not hide a
// refusal from the next.
func TestMatrixEveryRoute(t *testing.T) {
	ctx := context.Background()
	pol, err := policy.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, rt := range apiv1.Routes {
		if rt.Auth == apiv1.AuthNone {
			continue // TestMatrixOtherRoutes
		}
		t.Run(rt.Pattern(), func(t *testing.T) {
			w := newWorld(t)
			path := rt.Path
			if strings.Contains(path, "{") {
				path = rt.URL(w.resourceFor(rt))
			}
			var body any
			if rt.Method == "POST" {
				body = struct{}{}
			}
			call := func(c *apiclient.Client) int { return status(t, c, rt.Method, path, body) }
			anon := w.h.Client("")
			if got := call(anon); got != http.StatusUnauthorized {
				t.Errorf("no credential: %d, want 401", got)
			}
			switch rt.Auth {
			case apiv1.AuthJoin:
				for _, c := range []*apiclient.Client{w.tokens["a"][auth.RoleOwner], w.agentC["a"]} {
					if got := call(c); got != http.StatusUnauthorized {
						t.Errorf("a credential that is not a join token: %d, want 401", got)
					}
				}
			case apiv1.AuthAgent:
				for role, c := range w.tokens["a"] {
					if got := call(c); got != http.StatusForbidden {
						t.Errorf("%s token on an agent route: %d, want 403", role, got)
					}
				}
				if got := call(w.agentC["a"]); got == http.StatusUnauthorized || got == http.StatusForbidden {
					t.Errorf("the org's agent: %d", got)
				}
			case apiv1.AuthUser:
				if got := call(w.agentC["a"]); got != http.StatusForbidden {
					t.Errorf("agent credential on an API token route: %d, want 403", got)
				}
				for _, role := range auth.Roles {
					p := auth.Principal{Kind: auth.KindUser, Org: w.orgID["a"], Role: role}
					want := rt.Action == "" || pol.Authorize(ctx, p, rt.Action, policy.Resource{Org: w.orgID["a"]}) == nil
					got := call(w.tokens["a"][role])
					if denied := got == http.StatusForbidden || got == http.StatusUnauthorized; denied == want {
						t.Errorf("%s: %d, allowed by the table and policy: %v", role, got, want)
					}
				}
			}
		})
	}
}

// resourceFor names org a's resource a route's {…} is about.
func (w *world) resourceFor(rt apiv1.Route) string {
	switch {
	case strings.HasPrefix(rt.Path, "/api/v1/jobs/"), strings.HasPrefix(rt.Path, "/api/v1/agent/jobs/"):
		return w.job["a"]
	case strings.HasPrefix(rt.Path, "/api/v1/agents/"):
		return w.agent["a"]
	case strings.HasPrefix(rt.Path, "/api/v1/tokens/"):
		return w.token["a"]
	case strings.HasPrefix(rt.Path, "/api/v1/orgs/"):
		return w.orgID["a"]
	case strings.HasPrefix(rt.Path, "/api/v1/rbs/sessions/"):
		return "ses_00000000000000000000000000:heartbeat"
	case strings.HasPrefix(rt.Path, "/api/v1/sessions/"), strings.HasPrefix(rt.Path, "/api/v1/agent/sessions/"):
		return "ses_00000000000000000000000000"
	}
	panic("no resource for " + rt.Path)
}

// Routes that are not about one org's resource: open ones answer anyone;
// the rest refuse a missing or wrong kind of credential.
func TestMatrixOtherRoutes(t *testing.T) {
	w := newWorld(t)
	anon := w.h.Client("")
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if got := status(t, anon, "GET", p, nil); got != http.StatusOK {
			t.Errorf("GET %s: %d", p, got)
		}
	}
	if got := status(t, anon, "POST", "/webhooks/github", struct{}{}); got != http.StatusUnauthorized {
		t.Errorf("unsigned webhook: %d, want 401", got)
	}
	for role, c := range w.tokens["a"] {
		var who apiv1.Whoami
		must(t, c, "GET", "/api/v1/whoami", nil, &who)
		if who.Role != string(role) || who.Org != w.orgID["a"] {
			t.Errorf("whoami as %s: %+v", role, who)
		}
	}
	if got := status(t, anon, "GET", "/api/v1/whoami", nil); got != http.StatusUnauthorized {
		t.Errorf("whoami without a token: %d", got)
	}
	agentRoutes := map[string]any{
		"/api/v1/agent/refresh":  struct{}{},
		"/api/v1/agent/register": apiv1.Register{Labels: []string{"linux"}, MaxJobs: 1},
		"/api/v1/agent/sync":     apiv1.Sync{},
		"/api/v1/agent/lease":    apiv1.LeaseRequest{},
	}
	for p, body := range agentRoutes {
		if got := status(t, w.tokens["a"][auth.RoleOwner], "POST", p, body); got != http.StatusForbidden {
			t.Errorf("POST %s with an owner token: %d, want 403", p, got)
		}
		if got := status(t, anon, "POST", p, body); got != http.StatusUnauthorized {
			t.Errorf("POST %s without a credential: %d, want 401", p, got)
		}
		if got := status(t, w.agentC["a"], "POST", p, body); got >= 300 {
			t.Errorf("POST %s by the agent: %d", p, got)
		}
	}
	// Declared labels beyond the enrollment's are refused (capabilities
	// are verified, not trusted), and nothing changes.
	if got := status(t, w.agentC["a"], "POST", "/api/v1/agent/register", apiv1.Register{Labels: []string{"linux", "gpu"}, MaxJobs: 1}); got != http.StatusForbidden {
		t.Errorf("register beyond the enrollment's labels: %d, want 403", got)
	}
	// A disabled agent's credential stops working at once.
	must(t, w.tokens["a"][auth.RoleAdmin], "POST", "/api/v1/agents/"+w.agent["a"]+"/disable", struct{}{}, nil)
	if got := status(t, w.agentC["a"], "POST", "/api/v1/agent/sync", apiv1.Sync{}); got != http.StatusUnauthorized {
		t.Errorf("disabled agent: %d, want 401", got)
	}
}

// What an org trusts to write its build cache: every role of the org reads
// it, only admins change it, and another org never sees or changes it.
func TestMatrixCacheTrust(t *testing.T) {
	w := newWorld(t)
	const path = "/api/v1/cache/trust"
	set := apiv1.CacheTrust{UntrustedRefs: []string{"refs/heads/exp/*"}, ACWriteRefs: []string{"refs/heads/main"}}
	for _, role := range auth.Roles {
		c, ok := w.tokens["a"][role]
		if !ok {
			continue
		}
		if got := status(t, c, "GET", path, nil); got != http.StatusOK {
			t.Errorf("GET by %s: %d, want 200", role, got)
		}
		want := http.StatusForbidden
		if rankOf(role) >= rankOf(auth.RoleAdmin) {
			want = http.StatusOK
		}
		if got := status(t, c, "POST", path, set); got != want {
			t.Errorf("POST by %s: %d, want %d", role, got, want)
		}
	}
	if got := status(t, w.agentC["a"], "GET", path, nil); got != http.StatusForbidden {
		t.Errorf("GET by an agent: %d, want 403", got)
	}
	var got apiv1.CacheTrust
	if _, err := w.tokens["a"][auth.RoleViewer].Do(context.Background(), "GET", path, nil, &got); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.UntrustedRefs, ",") != "refs/heads/exp/*" || strings.Join(got.ACWriteRefs, ",") != "refs/heads/main" || got.UpdatedBy == "" {
		t.Errorf("org a reads %+v", got)
	}
	var other apiv1.CacheTrust
	if _, err := w.tokens["b"][auth.RoleAdmin].Do(context.Background(), "GET", path, nil, &other); err != nil {
		t.Fatal(err)
	}
	if len(other.UntrustedRefs) != 0 || strings.Join(other.ACWriteRefs, ",") != "refs/heads/*,refs/tags/*" {
		t.Errorf("org b reads %+v, want its own defaults", other)
	}
	for _, bad := range []any{
		apiv1.CacheTrust{UntrustedRefs: []string{"main"}, ACWriteRefs: []string{}},
		apiv1.CacheTrust{UntrustedRefs: []string{}, ACWriteRefs: []string{"refs/*/x"}},
		apiv1.CacheTrust{UntrustedRefs: []string{"refs/heads/a b"}, ACWriteRefs: []string{}},
		map[string]any{"untrusted_refs": []string{}},
	} {
		if got := status(t, w.tokens["a"][auth.RoleAdmin], "POST", path, bad); got != http.StatusBadRequest {
			t.Errorf("POST %+v: %d, want 400", bad, got)
		}
	}
}
