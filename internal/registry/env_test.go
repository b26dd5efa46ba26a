package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache/blobstore"
	"github.com/nimbus-build/nimbus/internal/cache/disk"
	"github.com/nimbus-build/nimbus/internal/policy"
	"github.com/nimbus-build/nimbus/internal/registry/registrytest"
)

// The orgs and credentials of the tests. Tokens are checked by a small
// working authenticator; every decision goes through the real policy.
const (
	orgAcme   = "org_acme"
	orgGlobex = "org_globex"
)

var testPrincipals = map[string]auth.Principal{
	"acme-ci":       {Kind: auth.KindUser, Org: orgAcme, ID: "tok_acme_ci", Role: auth.RoleCI},
	"acme-viewer":   {Kind: auth.KindUser, Org: orgAcme, ID: "tok_acme_viewer", Role: auth.RoleViewer},
	"acme-dev":      {Kind: auth.KindUser, Org: orgAcme, ID: "tok_acme_dev", Role: auth.RoleDeveloper},
	"globex-ci":     {Kind: auth.KindUser, Org: orgGlobex, ID: "tok_globex_ci", Role: auth.RoleCI},
	"globex-owner":  {Kind: auth.KindUser, Org: orgGlobex, ID: "tok_globex_owner", Role: auth.RoleOwner},
	"acme-job":      {Kind: auth.KindJob, Org: orgAcme, ID: "job_1", Scopes: []string{"registry.read", "registry.write"}},
	"acme-job-read": {Kind: auth.KindJob, Org: orgAcme, ID: "job_2", Scopes: []string{"registry.read"}},
	"acme-job-none": {Kind: auth.KindJob, Org: orgAcme, ID: "job_3", Scopes: []string{"cache.read", "cache.write"}},
	"acme-agent":    {Kind: auth.KindAgent, Org: orgAcme, ID: "agt_1"},
}

type mapAuthn struct{}

func (mapAuthn) Authenticate(ctx context.Context, tok string) (auth.Principal, error) {
	p, ok := testPrincipals[tok]
	if !ok {
		return auth.Principal{}, fmt.Errorf("%w: unknown token", auth.ErrUnauthenticated)
	}
	return p, nil
}

// clock is a time source tests move forward.
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time                  { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration)         { c.off.Add(int64(d)) }
func (c *clock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// env is a registry under test: the real disk store behind Verifying,
// served on 127.0.0.1:0, with an upstream docker-registry behind a front.
type env struct {
	t     testing.TB
	reg   *Registry
	srv   *httptest.Server
	host  string
	disk  *disk.Store
	store blobstore.Store
	dist  *registrytest.Distribution
	front *registrytest.Front
	clock *clock
	cfg   Config
}

type envOption func(*envOptions)

type envOptions struct {
	cfg           Config
	quotas        map[string]blobstore.Quota
	idle          time.Duration
	maxBlob       int64
	noUpstream    bool
	extraUpstream func(*env) []UpstreamConfig
}

func withConfig(f func(*Config)) envOption {
	return func(o *envOptions) { f(&o.cfg) }
}

func withQuota(org string, q blobstore.Quota) envOption {
	return func(o *envOptions) { o.quotas[org] = q }
}

func withIdleTimeout(d time.Duration) envOption { return func(o *envOptions) { o.idle = d } }

func withMaxBlobSize(n int64) envOption { return func(o *envOptions) { o.maxBlob = n } }

// upstreamName is the test upstream's name (and the mirror).
const upstreamName = "upstream.test"

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	o := envOptions{quotas: map[string]blobstore.Quota{}}
	for _, f := range opts {
		f(&o)
	}
	e := &env{t: t, clock: &clock{}}
	e.dist = registrytest.StartDistribution(t, registrytest.DistributionOptions{})
	e.front = registrytest.StartFront(t, e.dist)
	cfg := o.cfg
	cfg.Upstreams = append([]UpstreamConfig{{Name: upstreamName, URL: e.front.URL}}, cfg.Upstreams...)
	if cfg.Mirror == "" {
		cfg.Mirror = upstreamName
	}
	if cfg.TagTTL == 0 {
		cfg.TagTTL = time.Minute
	}
	d, err := disk.Open(t.TempDir(), disk.Options{OrgQuotas: o.quotas, NoSync: true, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.disk = d
	e.store = blobstore.NewVerifying(d)
	pol, err := policy.New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e.reg, err = New(Options{
		Config: cfg, Store: e.store, Authn: mapAuthn{}, Authz: policy.OrgAuthorizer{Engine: pol},
		OrgName: func(ctx context.Context, id string) (string, error) {
			return map[string]string{orgAcme: "Acme Inc", orgGlobex: "globex"}[id], nil
		},
		TokenKey: []byte(strings.Repeat("k", 32)), TempDir: t.TempDir(), UpstreamIdleTimeout: o.idle, MaxBlobSize: o.maxBlob,
		Logger: slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), Now: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.cfg = e.reg.cfg
	e.srv = httptest.NewServer(e.reg)
	e.host = strings.TrimPrefix(e.srv.URL, "http://")
	t.Cleanup(func() {
		e.srv.CloseClientConnections()
		e.srv.Close()
		e.reg.Close()
		d.Close()
	})
	return e
}

type testLog struct{ t testing.TB }

func (l testLog) Write(b []byte) (int, error) {
	l.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// upstreamRef is a reference to push to the upstream directly.
func (e *env) upstreamRef(repo string) string { return e.front.Host + "/" + repo }

// pushUpstream pushes img (a v1.Image or v1.ImageIndex) to the upstream
// repository repo:tag, behind the front's back (not counted).
func (e *env) pushUpstream(repoTag string, img any) {
	e.t.Helper()
	switch x := img.(type) {
	case v1.Image:
		registrytest.Push(e.t, e.upstreamRef(repoTag), x, e.dist.Transport())
	case v1.ImageIndex:
		registrytest.PushIndex(e.t, e.upstreamRef(repoTag), x, e.dist.Transport())
	default:
		e.t.Fatalf("push %T", img)
	}
}

// do sends a request to the registry with token (Basic, as docker login
// stores it; "" for none) and returns the response with its body read.
func (e *env) do(method, path, token string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.SetBasicAuth("nimbus", token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// token gets a registry token for scopes with a Nimbus token.
func (e *env) token(nimbusToken string, scopes ...string) string {
	e.t.Helper()
	q := url.Values{"service": {"nimbus"}, "scope": scopes}
	resp, b := e.do("GET", "/v2/token?"+q.Encode(), nimbusToken, nil)
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("token: %d %s", resp.StatusCode, b)
	}
	var tr tokenResponse
	if err := json.Unmarshal(b, &tr); err != nil {
		e.t.Fatal(err)
	}
	return tr.Token
}

// bearer sends a request with a registry token.
func (e *env) bearer(method, path, tok string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	return e.do(method, path, "", body, append([]string{"Authorization", "Bearer " + tok}, hdr...)...)
}

// ociCode checks that an answer is a registry error JSON and returns its
// first code.
func ociCode(t testing.TB, resp *http.Response, b []byte) string {
	t.Helper()
	if resp.Request.Method == http.MethodHead {
		return ""
	}
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(b, &body); err != nil || len(body.Errors) == 0 || body.Errors[0].Code == "" {
		t.Fatalf("%s %s: %d, not a registry error: %q", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	return body.Errors[0].Code
}

// held reports whether org holds the blob d in the store.
func (e *env) held(org, d string) bool {
	e.t.Helper()
	dg, err := ParseDigest(d)
	if err != nil {
		e.t.Fatal(err)
	}
	missing, err := e.store.FindMissing(context.Background(), org, blobstore.KindCAS, []blobstore.Digest{{Hash: dg.Hash, Size: -1}})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(missing) == 0
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
}

func basicHeader(token string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte("nimbus:"+token))
}
