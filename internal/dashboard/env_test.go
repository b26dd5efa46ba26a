package dashboard_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/sso/ssotest"
	"github.com/nimbus-build/nimbus/internal/websession"
)

// env is a control plane with its dashboard, a real OpenID Provider
// (corp) and the GitHub emulator as sign-in providers, and two orgs:
// default and other.
type env struct {
	t    *testing.T
	h    *apptest.Harness
	op   *ssotest.OP
	gh   *githubtest.Server
	orgA string // "default"
	orgB string // "other"
	// tokenB is an admin token of org other.
	tokenB string
}

// People of the OP, and the roles the rules give them.
var people = []ssotest.User{
	{ID: "u-alice", Username: "alice", Password: "pw-alice", Email: "alice@example.com", EmailVerified: true, FirstName: "Alice"},
	{ID: "u-bob", Username: "bob", Password: "pw-bob", Email: "bob@example.com", EmailVerified: true, FirstName: "Bob"},
	{ID: "u-carol", Username: "carol", Password: "pw-carol", Email: "carol@example.com", EmailVerified: true, FirstName: "Carol"},
	{ID: "u-dave", Username: "dave", Password: "pw-dave", Email: "dave@viewers.example.com", EmailVerified: true, FirstName: "Dave"},
	{ID: "u-erin", Username: "erin", Password: "pw-erin", Email: "erin@example.com", EmailVerified: true, FirstName: "Erin"},
	{ID: "u-mallory", Username: "mallory", Password: "pw-mallory", Email: "mallory@evil.example", EmailVerified: true, FirstName: "Mallory"},
	{ID: "u-ulrich", Username: "ulrich", Password: "pw-ulrich", Email: "alice@example.com", EmailVerified: false, FirstName: "Unverified"},
}

const rulesYAML = `
rules:
  - {org: default, role: owner, email: alice@example.com}
  - {org: default, role: admin, email: bob@example.com}
  - {org: default, role: member, email: carol@example.com}
  - {org: default, role: viewer, email_domain: viewers.example.com}
  - {org: other, role: admin, email: erin@example.com}
  - {org: default, role: member, github_org: acme}
`

// newEnv starts it all. opts adjust the server's configuration.
func newEnv(t *testing.T, opts ...apptest.Option) *env {
	t.Helper()
	e := &env{t: t, op: ssotest.Reserve(t), gh: githubtest.NewServer(t, githubtest.Config{})}
	e.gh.AddOAuthClient(githubtest.OAuthClient{ClientID: "Iv1.nimbus", ClientSecret: "gh-secret"})
	cfg := fmt.Sprintf(`providers:
  - {name: corp, label: Corp SSO, issuer: %q, client_id: %s, client_secret: %s}
github: {client_id: Iv1.nimbus, client_secret: gh-secret, web_url: %q}
%s`, e.op.Issuer, ssotest.ClientID, ssotest.ClientSecret, e.gh.URL, rulesYAML)
	path := filepath.Join(t.TempDir(), "dashboard.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	opts = append([]apptest.Option{func(c *app.ServerConfig) {
		c.DashboardConfig = path
		c.GitHubAPIURL = e.gh.URL
	}}, opts...)
	e.h = apptest.Start(t, "sqlite", opts...)
	e.op.Run(t, []string{e.h.URL + "/auth/callback"}, people)
	e.orgA = e.h.OrgID
	var b apiv1.CreatedOrg
	if _, err := e.h.Owner().Do(context.Background(), "POST", "/api/v1/orgs", apiv1.CreateOrg{Name: "other"}, &b); err != nil {
		t.Fatal(err)
	}
	e.orgB, e.tokenB = b.Org.ID, b.AdminToken.Secret
	return e
}

// browser is an HTTP client that keeps cookies and follows redirects, as
// a browser does.
type browser struct {
	*http.Client
	e *env
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{Client: &http.Client{Jar: jar, Timeout: 30 * time.Second}, e: e}
}

// noRedirects is a client that shows redirects instead of following them.
func (b *browser) noRedirects() *http.Client {
	c := *b.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func read(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// signIn signs in at the OP as user (its login form) and returns the
// page the browser ends at.
func (b *browser) signIn(user, password string) (*http.Response, string) {
	t := b.e.t
	t.Helper()
	resp, err := b.Get(b.e.h.URL + "/login/corp")
	if err != nil {
		t.Fatal(err)
	}
	page := read(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("sign-in start: %d %s", resp.StatusCode, page)
	}
	resp, err = ssotest.SubmitLogin(b.Client, resp.Request.URL.String(), page, user, password)
	if err != nil {
		t.Fatal(err)
	}
	return resp, read(t, resp)
}

// mustSignIn signs in and checks that it ended on the dashboard.
func (b *browser) mustSignIn(user, password string) {
	b.e.t.Helper()
	resp, body := b.signIn(user, password)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Request.URL.Path, "/ui/") {
		b.e.t.Fatalf("sign-in as %s ended at %s with %d: %.400s", user, resp.Request.URL, resp.StatusCode, body)
	}
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

// csrf reads the CSRF token from a dashboard page.
func (b *browser) csrf() string {
	t := b.e.t
	t.Helper()
	resp, err := b.Get(b.e.h.URL + "/ui/orgs")
	if err != nil {
		t.Fatal(err)
	}
	m := csrfMeta.FindStringSubmatch(read(t, resp))
	if m == nil {
		t.Fatal("no CSRF token on the page")
	}
	return m[1]
}

// post submits a form of the dashboard.
func (b *browser) post(path string, form url.Values) (*http.Response, string) {
	t := b.e.t
	t.Helper()
	resp, err := b.PostForm(b.e.h.URL+path, form)
	if err != nil {
		t.Fatal(err)
	}
	return resp, read(t, resp)
}

func (b *browser) get(path string) (*http.Response, string) {
	t := b.e.t
	t.Helper()
	resp, err := b.Get(b.e.h.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	return resp, read(t, resp)
}

// session makes a session directly in the store (no provider round
// trip): roles, acting in org, authenticated at authAt, expiring at
// expires. It returns the cookie that carries it.
func (e *env) session(roles []websession.OrgRole, org string, authAt, expires time.Time) *http.Cookie {
	e.t.Helper()
	secret := base64.RawURLEncoding.EncodeToString([]byte(ids.New("secret") + ids.New("more")))
	h := sha256.Sum256([]byte(secret))
	now := time.Now()
	s := websession.Session{ID: ids.New("wss"), Hash: h[:], UserID: websession.UserID("corp", secret[:12]), Provider: "corp",
		Subject: secret[:12], Email: "test@example.com", Name: "Test", Roles: roles, Org: org, AuthAt: authAt,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: expires}
	if err := e.h.CP.Store.WebSessions().Create(context.Background(), s); err != nil {
		e.t.Fatal(err)
	}
	return &http.Cookie{Name: e.h.CP.Web.CookieName(), Value: secret}
}

// sessionAs is a fresh, live session with one role in one org.
func (e *env) sessionAs(org string, role auth.Role) *http.Cookie {
	return e.session([]websession.OrgRole{{Org: org, Role: role}}, org, time.Now(), time.Now().Add(time.Hour))
}

func submitLogin(b *browser, resp *http.Response, page, user, password string) (*http.Response, error) {
	return ssotest.SubmitLogin(b.Client, resp.Request.URL.String(), page, user, password)
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
