package registry

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/nimbus-build/nimbus/internal/registry/registrytest"
)

// An upstream of the Docker token protocol (as Docker Hub and ghcr.io
// are): the registry answers its challenge at its realm, anonymously,
// and keeps the token for the repository's later requests.
func TestUpstreamAnonymousTokenDance(t *testing.T) {
	e := newEnv(t)
	e.front.RequireTokens("", "")
	img := registrytest.RandomImage(t, 4096, 3)
	e.pushUpstream("library/tok:1", img)
	dir := filepath.Join(t.TempDir(), "d")
	if out, err := registrytest.NewSkopeo(t).Copy(context.Background(), "docker://"+e.host+"/library/tok:1", "dir:"+dir, "nimbus:acme-ci"); err != nil {
		t.Fatal(err, out)
	}
	if got := skopeoDigest(t, dir); got != registrytest.Digest(t, img) {
		t.Fatalf("pulled %s", got)
	}
	// One token for the manifest and its four blobs.
	if n := e.front.TokensIssued(); n != 1 {
		t.Errorf("%d tokens fetched, want 1", n)
	}
}

// An upstream that gives tokens only for credentials: the org configured
// with them pulls (the password sealed, here in memory), an org without
// them gets the answer of a repository that does not exist.
func TestUpstreamCredentialsTokenDance(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("hunter2\n"), 0o600)
	e := newEnv(t, withConfig(func(c *Config) {
		c.Orgs = map[string]OrgPolicy{orgAcme: {Credentials: map[string]Credential{upstreamName: {Username: "bot", PasswordFile: pw}}}}
	}))
	e.front.RequireTokens("bot", "hunter2")
	img := registrytest.RandomImage(t, 4096, 1)
	e.pushUpstream("private/img:1", img)
	path := "/v2/" + upstreamName + "/private/img/manifests/1"
	if resp, b := e.do("GET", path, "acme-ci", nil); resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != registrytest.Digest(t, img) {
		t.Fatalf("acme with credentials: %d %s", resp.StatusCode, b)
	}
	resp, b := e.do("GET", path, "globex-ci", nil)
	if resp.StatusCode != 404 || ociCode(t, resp, b) != codeNameUnknown {
		t.Errorf("globex without credentials: %d %s", resp.StatusCode, b)
	}
}

// An org's policy limits the upstreams and repositories it pulls through:
// a name outside is unknown to it (and its token grants nothing there);
// other orgs are unaffected.
func TestOrgPolicyLimitsUpstreamsAndRepositories(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) {
		c.Upstreams = []UpstreamConfig{{Name: "other.test", URL: "http://127.0.0.1:1"}}
		c.Orgs = map[string]OrgPolicy{orgAcme: {Upstreams: []string{upstreamName}, Repositories: []string{upstreamName + "/team/**"}}}
	}))
	for _, repo := range []string{"team/app:1", "other/app:1"} {
		e.pushUpstream(repo, registrytest.RandomImage(t, 1024, 1))
	}
	for path, want := range map[string]int{
		"/v2/" + upstreamName + "/team/app/manifests/1":  200,
		"/v2/team/app/manifests/1":                       200, // the mirror's name for the same
		"/v2/" + upstreamName + "/other/app/manifests/1": 404,
		"/v2/other/app/manifests/1":                      404,
		"/v2/other.test/team/app/manifests/1":            404,
	} {
		resp, b := e.do("GET", path, "acme-ci", nil)
		if resp.StatusCode != want || (want == 404 && ociCode(t, resp, b) != codeNameUnknown) {
			t.Errorf("acme %s: %d %s", path, resp.StatusCode, b)
		}
	}
	q := "/v2/token?service=nimbus&scope=repository:" + upstreamName + "/other/app:pull&scope=repository:" + upstreamName + "/team/app:pull"
	resp, b := e.do("GET", q, "acme-ci", nil)
	var tr tokenResponse
	if resp.StatusCode != 200 || json.Unmarshal(b, &tr) != nil {
		t.Fatalf("token: %d %s", resp.StatusCode, b)
	}
	c, err := e.reg.signer.Verify(tr.Token)
	if err != nil || c.Covers(upstreamName+"/other/app") || !c.Allows(upstreamName+"/team/app", actionPull) {
		t.Errorf("token access %+v, %v", c.Access, err)
	}
	if resp, b := e.do("GET", "/v2/"+upstreamName+"/other/app/manifests/1", "globex-ci", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("globex under the default policy: %d %s", resp.StatusCode, b)
	}
}
