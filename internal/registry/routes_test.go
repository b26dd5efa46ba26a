package registry

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/policy"
)

var update = flag.Bool("update", false, "rewrite testdata/routes.golden")

// The route table, as reviewers see it: a new route or a changed access
// shows in the diff (go test ./internal/registry -run RouteTableGolden
// -update).
func TestRouteTableGolden(t *testing.T) {
	e := newEnv(t)
	var b strings.Builder
	for _, r := range e.reg.Routes() {
		fmt.Fprintf(&b, "%-6s %-9s %s\n", r.Method, r.Endpoint, r.Access)
	}
	if *update {
		if err := os.WriteFile("testdata/routes.golden", []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/routes.golden")
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != b.String() {
		t.Errorf("route table changed (-update to accept):\n%s", b.String())
	}
}

// Every route against every kind of caller, with the real policy: the
// edge lets through exactly what the policy allows for the route's
// access, and refuses the rest with a registry error (401 with a
// challenge when no credential fits, 403 when the credential may not).
func TestRouteMatrix(t *testing.T) {
	e := newEnv(t)
	pol, err := policy.New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Each route, on acme's own repository (push) or the mirror (pull).
	resp, _ := e.do("POST", "/v2/"+orgAcme+"/app/blobs/uploads/", "acme-ci", nil)
	upload := resp.Header.Get("Location")
	paths := map[Endpoint]string{
		EndpointBase:      "/v2/",
		EndpointCatalog:   "/v2/_catalog",
		EndpointManifest:  "/v2/" + orgAcme + "/app/manifests/v1",
		EndpointBlob:      "/v2/" + orgAcme + "/app/blobs/sha256:" + hexA,
		EndpointUploads:   "/v2/" + orgAcme + "/app/blobs/uploads/",
		EndpointUpload:    upload,
		EndpointTags:      "/v2/" + orgAcme + "/app/tags/list",
		EndpointReferrers: "/v2/" + orgAcme + "/app/referrers/sha256:" + hexA,
	}
	callers := []string{"", "nope", "acme-ci", "acme-viewer", "acme-dev", "acme-job", "acme-job-read", "acme-job-none", "acme-agent", "globex-ci", "globex-owner"}
	for _, rt := range e.reg.Routes() {
		if rt.Access == AccessToken {
			continue
		}
		for _, who := range callers {
			p, known := testPrincipals[who]
			var want bool
			switch rt.Access {
			case AccessLogin, AccessPull:
				want = known && pol.Authorize(context.Background(), p, ActionRead, policy.Resource{Org: p.Org}) == nil
			case AccessPush:
				// Only into its own org's repositories.
				want = known && p.Org == orgAcme && pol.Authorize(context.Background(), p, ActionWrite, policy.Resource{Org: p.Org}) == nil
			}
			path := paths[rt.Endpoint]
			if rt.Endpoint == EndpointUpload && rt.Method != "GET" && want {
				// Do not consume the session used for the others.
				resp, _ := e.do("POST", "/v2/"+orgAcme+"/app/blobs/uploads/", "acme-ci", nil)
				path = resp.Header.Get("Location")
			}
			resp, b := e.do(rt.Method, path, who, strings.NewReader(""))
			denied := resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden
			if denied == want {
				t.Errorf("%s %s by %q: %d, want allowed=%v (%s)", rt.Method, rt.Endpoint, who, resp.StatusCode, want, b)
				continue
			}
			if denied {
				ociCode(t, resp, b)
				if resp.StatusCode == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer realm=") {
					t.Errorf("%s %s by %q: 401 without a challenge", rt.Method, rt.Endpoint, who)
				}
			}
		}
	}
}

// Path tricks and garbage: every answer is a registry error (4xx, JSON),
// never a 500, a redirect or something of another org.
func TestPathTricks(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{
		"/v2/../api/v1/jobs", "/v2/%2e%2e/%2e%2e/etc/passwd/manifests/x", "/v2/" + orgAcme + "/../" + orgGlobex + "/app/manifests/v1",
		"/v2/a//b/manifests/x", "/v2/a/manifests/..", "/v2/a/manifests/%00", "/v2/A/manifests/x", "/v2/a/blobs/sha256:..%2f..",
		"/v2/a/blobs/uploads/../../../x", "/v2/a/blobs/sha512:" + hexA, "/v2/a%2fb/manifests/x%2fy", "/v2/" + strings.Repeat("a/", 200) + "manifests/x",
		"/v2/a/manifests/" + strings.Repeat("t", 200), "/v2/a/nothing", "/v2/_catalog/../x",
	} {
		req, err := http.NewRequest("GET", e.srv.URL+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = p // sent as written, not cleaned by the client
		req.SetBasicAuth("nimbus", "acme-ci")
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4096)
		n, _ := resp.Body.Read(b)
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("%s: %d %s", p, resp.StatusCode, b[:n])
			continue
		}
		ociCode(t, resp, b[:n])
	}
}
