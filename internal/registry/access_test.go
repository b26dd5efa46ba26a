package registry

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
	"github.com/nimbus-build/nimbus/internal/registry/registrytest"
)

// The token protocol as docker login and skopeo speak it: /v2/ asks for
// a token at the realm, the realm takes the Nimbus token as a Basic
// password (or an OAuth2 password grant), and the registry token it
// returns works on /v2/; a bad, tampered, expired or unfit credential is
// a 401 with a registry error.
func TestTokenProtocol(t *testing.T) {
	e := newEnv(t)
	resp, b := e.do("GET", "/v2/", "", nil)
	ch := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != 401 || ociCode(t, resp, b) != codeUnauthorized ||
		ch != `Bearer realm="`+e.srv.URL+`/v2/token",service="nimbus"` || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("/v2/ without credentials: %d %q %s", resp.StatusCode, ch, b)
	}
	tok := e.token("acme-viewer")
	if !strings.HasPrefix(tok, TokenPrefix) {
		t.Fatalf("token %q", tok)
	}
	if resp, b := e.bearer("GET", "/v2/", tok, nil); resp.StatusCode != 200 || string(b) != "{}" {
		t.Fatalf("/v2/ with the token: %d %s", resp.StatusCode, b)
	}
	// The OAuth2 form containerd uses.
	form := url.Values{"grant_type": {"password"}, "username": {"x"}, "password": {"acme-viewer"}, "service": {"nimbus"}, "scope": {"repository:library/alpine:pull"}}
	resp, b = e.do("POST", "/v2/token", "", strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
	var tr tokenResponse
	if resp.StatusCode != 200 || json.Unmarshal(b, &tr) != nil || tr.AccessToken == "" || tr.ExpiresIn != 300 {
		t.Fatalf("oauth2 password grant: %d %s", resp.StatusCode, b)
	}
	// A job's registry tokens live a minute.
	resp, b = e.do("GET", "/v2/token?service=nimbus", "acme-job", nil)
	if resp.StatusCode != 200 || json.Unmarshal(b, &tr) != nil || tr.ExpiresIn != 60 {
		t.Errorf("job token: %d %s", resp.StatusCode, b)
	}
	// Credentials that must not get a token.
	for _, bad := range []string{"nope", "acme-agent", "acme-job-none", tok} {
		resp, b := e.do("GET", "/v2/token?service=nimbus", bad, nil)
		if resp.StatusCode != 401 || ociCode(t, resp, b) != codeUnauthorized {
			t.Errorf("token for %q: %d %s", bad, resp.StatusCode, b)
		}
	}
	// A tampered token, another key's token, an expired token.
	tampered := tok[:len(tok)-2] + "AA"
	other := (&tokenSigner{key: []byte(strings.Repeat("x", 32)), ttl: time.Minute, now: time.Now})
	forged, _, _ := other.Sign(TokenClaims{Org: orgAcme, Access: []Scope{{Name: "x", Actions: []string{"pull"}}}}, 0)
	for name, bad := range map[string]string{"tampered": tampered, "forged": forged} {
		if resp, b := e.bearer("GET", "/v2/", bad, nil); resp.StatusCode != 401 || ociCode(t, resp, b) != codeUnauthorized {
			t.Errorf("%s token: %d %s", name, resp.StatusCode, b)
		}
	}
	e.clock.Advance(6 * time.Minute)
	if resp, b := e.bearer("GET", "/v2/", tok, nil); resp.StatusCode != 401 || ociCode(t, resp, b) != codeUnauthorized {
		t.Errorf("expired token: %d %s", resp.StatusCode, b)
	}
	// skopeo login (the Basic-to-token exchange) with a Nimbus token.
	sk := registrytest.NewSkopeo(t)
	if out, err := sk.Login(context.Background(), e.host, "acme-viewer"); err != nil {
		t.Errorf("skopeo login: %v %s", err, out)
	}
	if out, err := sk.Login(context.Background(), e.host, "nope"); err == nil {
		t.Errorf("skopeo login with a bad token succeeded: %s", out)
	}
}

// Own repositories: a CI token pushes with a real client
// (go-containerregistry, crane's library), a viewer pulls it with skopeo;
// the tag list shows it; another org cannot see it and cannot tell it
// from a repository that never existed.
func TestPushAndPullOwnRepository(t *testing.T) {
	e := newEnv(t)
	img := registrytest.RandomImage(t, 64<<10, 2)
	ref := e.host + "/" + orgAcme + "/app:v1"
	registrytest.Push(t, ref, img, http.DefaultTransport, registrytest.Basic("acme-ci"))
	want := registrytest.Digest(t, img)
	// A second push of the same image is cheap and changes nothing.
	registrytest.Push(t, e.host+"/"+orgAcme+"/app:v2", img, http.DefaultTransport, registrytest.Basic("acme-job"))

	dir := t.TempDir()
	out, err := registrytest.NewSkopeo(t).Copy(context.Background(), "docker://"+ref, "dir:"+dir, "nimbus:acme-viewer")
	if err != nil {
		t.Fatal(err, out)
	}
	if got := skopeoDigest(t, dir); got != want {
		t.Fatalf("pulled %s, pushed %s", got, want)
	}
	resp, b := e.do("GET", "/v2/"+orgAcme+"/app/tags/list", "acme-viewer", nil)
	if resp.StatusCode != 200 || string(b) != `{"name":"org_acme/app","tags":["v1","v2"]}`+"\n" {
		t.Errorf("tags: %d %s", resp.StatusCode, b)
	}
	resp, b = e.do("GET", "/v2/"+orgAcme+"/app/tags/list?n=1", "acme-viewer", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `["v1"]`) || !strings.Contains(resp.Header.Get("Link"), "last=v1") {
		t.Errorf("tags page: %d %s %q", resp.StatusCode, b, resp.Header.Get("Link"))
	}
	// globex pushes under its name, which is a valid component.
	registrytest.Push(t, e.host+"/globex/tool:1", img, http.DefaultTransport, registrytest.Basic("globex-ci"))

	// Another org: the same answer as for a name nobody pushed.
	pushed := e.answers("globex-ci", "/v2/"+orgAcme+"/app/manifests/v1", "/v2/"+orgAcme+"/app/tags/list")
	never := e.answers("globex-ci", "/v2/"+orgAcme+"/nothing/manifests/v1", "/v2/"+orgAcme+"/nothing/tags/list")
	t.Logf("globex's answers: %s", pushed)
	if pushed != never {
		t.Errorf("globex learns that acme's repository exists:\n pushed: %s\n never:  %s", pushed, never)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	if resp, b := e.do("GET", "/v2/globex/other/blobs/"+ld.String(), "globex-ci", nil); resp.StatusCode != 200 {
		// globex pushed the same image, so it holds the layer: its own copy.
		t.Errorf("globex's own layer: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.do("GET", "/v2/globex/tool/manifests/1", "acme-ci", nil); resp.StatusCode != 404 || ociCode(t, resp, b) != codeManifestUnknown {
		t.Errorf("acme reading globex's repository: %d %s", resp.StatusCode, b)
	}
}

// answers summarizes what a caller gets for paths: status and error code
// of each, for comparing two sets of requests.
func (e *env) answers(token string, paths ...string) string {
	e.t.Helper()
	var out []string
	for _, p := range paths {
		resp, b := e.do("GET", p, token, nil)
		code := ""
		if resp.StatusCode >= 400 {
			code = ociCode(e.t, resp, b)
		}
		out = append(out, resp.Status+" "+code)
	}
	return strings.Join(out, ", ")
}

// Tokens that may not push (viewer, developer, a job scoped to read) are
// refused with a registry error, by a real client and by hand, and
// nothing they send is stored; nobody pushes into a pulled-through
// repository.
func TestReadOnlyTokensCannotPush(t *testing.T) {
	e := newEnv(t)
	img := registrytest.RandomImage(t, 4096, 1)
	layers, _ := img.Layers()
	ld, lb := layerBytes(t, layers[0])
	for _, tok := range []string{"acme-viewer", "acme-dev", "acme-job-read"} {
		err := remote.Write(registrytest.Ref(t, e.host+"/"+orgAcme+"/app:x"), img, registrytest.Basic(tok))
		if err == nil {
			t.Errorf("%s pushed", tok)
		}
		// By hand, with the Nimbus token and with a registry token
		// granted pull only.
		resp, b := e.do("POST", "/v2/"+orgAcme+"/app/blobs/uploads/?digest="+ld, tok, strings.NewReader(string(lb)))
		if resp.StatusCode != 403 || ociCode(t, resp, b) != codeDenied {
			t.Errorf("%s POST: %d %s", tok, resp.StatusCode, b)
		}
		rt := e.token(tok, "repository:"+orgAcme+"/app:pull,push")
		resp, b = e.bearer("POST", "/v2/"+orgAcme+"/app/blobs/uploads/", rt, nil)
		if resp.StatusCode != 403 || ociCode(t, resp, b) != codeDenied {
			t.Errorf("%s POST with a pull token: %d %s", tok, resp.StatusCode, b)
		}
	}
	// A token for one repository does not reach another: the client is
	// told to get one (401 with the scope).
	rt := e.token("acme-ci", "repository:"+orgAcme+"/app:pull,push")
	resp, b := e.bearer("POST", "/v2/"+orgAcme+"/other/blobs/uploads/", rt, nil)
	if resp.StatusCode != 401 || ociCode(t, resp, b) != codeUnauthorized ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="repository:`+orgAcme+`/other:pull,push"`) {
		t.Errorf("other repository: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), b)
	}
	// Nobody pushes into an upstream's repository.
	resp, b = e.do("POST", "/v2/"+upstreamName+"/team/app/blobs/uploads/", "acme-ci", nil)
	if resp.StatusCode != 403 || ociCode(t, resp, b) != codeDenied {
		t.Errorf("push to an upstream: %d %s", resp.StatusCode, b)
	}
	if e.held(orgAcme, ld) {
		t.Error("a refused push stored its blob")
	}
}

// Another org's token never reaches an org's things: its requests
// resolve in its own org (own repositories, uploads), whatever the path
// says.
func TestAnotherOrgsToken(t *testing.T) {
	e := newEnv(t)
	img := registrytest.RandomImage(t, 4096, 1)
	registrytest.Push(t, e.host+"/"+orgAcme+"/app:v1", img, http.DefaultTransport, registrytest.Basic("acme-ci"))
	// An upload session of acme's.
	resp, _ := e.do("POST", "/v2/"+orgAcme+"/app/blobs/uploads/", "acme-ci", nil)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 202 || loc == "" {
		t.Fatalf("start upload: %d", resp.StatusCode)
	}
	for _, m := range []string{"GET", "PATCH", "PUT", "DELETE"} {
		resp, b := e.do(m, loc+"?digest=sha256:"+hexA, "globex-owner", strings.NewReader("x"))
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("globex %s on acme's upload: %d %s", m, resp.StatusCode, b)
		} else if code := ociCode(t, resp, b); code != codeDenied && code != codeBlobUploadUnknown && code != codeNameUnknown {
			t.Errorf("globex %s on acme's upload: %s", m, code)
		}
	}
	// acme's upload still works.
	if resp, _ := e.do("GET", loc, "acme-ci", nil); resp.StatusCode != 204 {
		t.Errorf("acme's upload after globex's attempts: %d", resp.StatusCode)
	}
	// A globex registry token scoped to acme's repository name grants
	// globex's view of that name (the mirror's), never acme's.
	rt := e.token("globex-owner", "repository:"+orgAcme+"/app:pull,push")
	resp, b := e.bearer("GET", "/v2/"+orgAcme+"/app/manifests/v1", rt, nil)
	if resp.StatusCode != 404 || ociCode(t, resp, b) != codeManifestUnknown {
		t.Errorf("globex token on acme's name: %d %s", resp.StatusCode, b)
	}
}

// Past the org's hard quota a pull still works: the blob streams from the
// upstream without being stored, so the next pull fetches it again.
func TestPullPastHardQuotaStreamsWithoutStoring(t *testing.T) {
	e := newEnv(t, withQuota(orgAcme, blobstore.Quota{Hard: 100 << 10}))
	d, want := bigLayer(t, e, "team/q:1", 300<<10)
	for round := range 2 {
		status, b, err := getBlob(t, e, "acme-ci", upstreamName+"/team/q", d)
		if err != nil || status != 200 || string(b) != string(want) {
			t.Fatalf("round %d: %d %v", round, status, err)
		}
		waitFor(t, "the flight to end", func() bool { return e.reg.flights.inFlight() == 0 })
		if e.held(orgAcme, d) {
			t.Fatal("stored past the hard quota")
		}
	}
	if g := e.front.BlobGets(); g != 2 {
		t.Errorf("%d upstream GETs, want 2 (nothing stored)", g)
	}
}

// An upstream that needs credentials: the org that has them pulls; the
// other org gets the same answer as for an image that never existed, for
// the manifest and for its blobs.
func TestPrivateUpstreamIsTheOrgsAlone(t *testing.T) {
	priv := registrytest.StartDistribution(t, registrytest.DistributionOptions{User: "bot", Password: "s3cret"})
	privFront := registrytest.StartFront(t, priv)
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	e := newEnv(t, withConfig(func(c *Config) {
		c.Upstreams = []UpstreamConfig{{Name: "private.test", URL: privFront.URL}}
		c.Orgs = map[string]OrgPolicy{orgAcme: {Credentials: map[string]Credential{"private.test": {Username: "bot", PasswordFile: pwFile}}}}
	}))
	img := registrytest.RandomImage(t, 8192, 1)
	registrytest.Push(t, privFront.Host+"/secret/app:1", img, priv.Transport(), remote.WithAuth(&authn.Basic{Username: "bot", Password: "s3cret"}))
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	want := registrytest.Digest(t, img)

	resp, b := e.do("GET", "/v2/private.test/secret/app/manifests/1", "acme-ci", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != want {
		t.Fatalf("acme with its credentials: %d %s", resp.StatusCode, b)
	}
	if status, _, err := getBlob(t, e, "acme-ci", "private.test/secret/app", ld.String()); status != 200 || err != nil {
		t.Fatalf("acme's blob: %d %v", status, err)
	}
	pulled := e.answers("globex-ci", "/v2/private.test/secret/app/manifests/1", "/v2/private.test/secret/app/manifests/"+want,
		"/v2/private.test/secret/app/blobs/"+ld.String(), "/v2/globex/x/blobs/"+ld.String())
	never := e.answers("globex-ci", "/v2/private.test/secret/other/manifests/1", "/v2/private.test/secret/other/manifests/sha256:"+hexA,
		"/v2/private.test/secret/other/blobs/sha256:"+hexA, "/v2/globex/x/blobs/sha256:"+hexA)
	t.Logf("globex's answers: %s", pulled)
	if pulled != never {
		t.Errorf("globex learns what acme pulled:\n pulled: %s\n never:  %s", pulled, never)
	}
	if strings.Contains(pulled, "200") {
		t.Errorf("globex got acme's private image: %s", pulled)
	}
}

// An org's uploads in progress hold at most the largest blob's size
// together: a token cannot fill the disk with sessions it never finishes.
// Cancelling one gives its bytes back.
func TestUploadsInProgressAreBounded(t *testing.T) {
	e := newEnv(t, withMaxBlobSize(1<<20))
	chunk := strings.Repeat("x", 600<<10)
	start := func() string {
		resp, b := e.do("POST", "/v2/"+orgAcme+"/app/blobs/uploads/", "acme-ci", nil)
		if resp.StatusCode != 202 {
			t.Fatalf("start: %d %s", resp.StatusCode, b)
		}
		return resp.Header.Get("Location")
	}
	first, second := start(), start()
	if resp, b := e.do("PATCH", first, "acme-ci", strings.NewReader(chunk)); resp.StatusCode != 202 {
		t.Fatalf("first chunk: %d %s", resp.StatusCode, b)
	}
	resp, b := e.do("PATCH", second, "acme-ci", strings.NewReader(chunk))
	if resp.StatusCode != http.StatusRequestEntityTooLarge || ociCode(t, resp, b) != codeSizeInvalid {
		t.Fatalf("second chunk past the budget: %d %s", resp.StatusCode, b)
	}
	// Another org has its own budget.
	resp, _ = e.do("POST", "/v2/globex/app/blobs/uploads/", "globex-ci", nil)
	if resp, b := e.do("PATCH", resp.Header.Get("Location"), "globex-ci", strings.NewReader(chunk)); resp.StatusCode != 202 {
		t.Fatalf("globex's chunk: %d %s", resp.StatusCode, b)
	}
	if resp, _ := e.do("DELETE", first, "acme-ci", nil); resp.StatusCode != 204 {
		t.Fatalf("cancel: %d", resp.StatusCode)
	}
	if resp, b := e.do("PATCH", start(), "acme-ci", strings.NewReader(chunk)); resp.StatusCode != 202 {
		t.Fatalf("after a cancel: %d %s", resp.StatusCode, b)
	}
}
