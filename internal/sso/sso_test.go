package sso_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
	"github.com/nimbus-build/nimbus/internal/sso"
	"github.com/nimbus-build/nimbus/internal/sso/ssotest"
)

func TestParseIsStrict(t *testing.T) {
	good := `
session: {idle: 30m, lifetime: 8h, step_up: 2m}
providers:
  - {name: corp, issuer: "https://login.example.com/", client_id: nimbus, client_secret: s3cret, groups_claim: roles}
github: {client_secret: gh}
rules:
  - {org: default, role: member, email_domain: example.com}
  - {org: default, role: admin, group: ci-admins, provider: corp}
  - {org: default, role: viewer, github_org: Acme, github_org_role: admin}
`
	c, err := sso.Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Session.Idle != 30*time.Minute || c.Providers[0].GroupsClaim != "roles" || c.GitHub.WebURL != "https://github.com" || c.Providers[0].Label != "corp" {
		t.Errorf("parsed %+v", c)
	}
	for name, doc := range map[string]string{
		"unknown key":      "rules:\n  - {org: a, role: admin, email: a@b.c, colour: red}\n",
		"unknown top":      "provider: []\n",
		"bad role":         "rules:\n  - {org: a, role: god, email: a@b.c}\n",
		"no matcher":       "rules:\n  - {org: a, role: admin}\n",
		"no org":           "rules:\n  - {role: admin, email: a@b.c}\n",
		"unknown provider": "rules:\n  - {org: a, role: admin, email: a@b.c, provider: nope}\n",
		"at domain":        "rules:\n  - {org: a, role: admin, email_domain: '@b.c'}\n",
		"no secret":        "providers:\n  - {name: corp, issuer: 'https://x/', client_id: c}\n",
		"bad name":         "providers:\n  - {name: Corp!, issuer: 'https://x/', client_id: c, client_secret: s}\n",
		"github name":      "providers:\n  - {name: github, issuer: 'https://x/', client_id: c, client_secret: s}\n",
		"bad issuer":       "providers:\n  - {name: corp, issuer: 'ftp://x/', client_id: c, client_secret: s}\n",
		"role w/o org":     "rules:\n  - {org: a, role: admin, email: a@b.c, github_org_role: admin}\n",
	} {
		if _, err := sso.Parse([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRoles(t *testing.T) {
	rules := []sso.Rule{
		{Org: "acme", Role: "member", EmailDomain: "example.com"},
		{Org: "acme", Role: "admin", Group: "ci-admins", Provider: "corp"},
		{Org: "ops", Role: "viewer", Email: "Bob@Example.com"},
		{Org: "acme", Role: "owner", GitHubOrg: "Acme", GitHubOrgRole: "admin"},
		{Org: "oss", Role: "viewer", GitHubOrg: "acme"},
	}
	for _, tc := range []struct {
		name string
		id   sso.Identity
		want map[string]auth.Role
	}{
		{"domain", sso.Identity{Provider: "corp", Email: "alice@example.com", EmailVerified: true}, map[string]auth.Role{"acme": auth.RoleDeveloper}},
		{"unverified e-mail matches nothing", sso.Identity{Provider: "corp", Email: "alice@example.com"}, map[string]auth.Role{}},
		{"look-alike domain", sso.Identity{Provider: "corp", Email: "eve@evil-example.com", EmailVerified: true}, map[string]auth.Role{}},
		{"subdomain is another domain", sso.Identity{Provider: "corp", Email: "eve@x.example.com", EmailVerified: true}, map[string]auth.Role{}},
		{"strongest wins", sso.Identity{Provider: "corp", Email: "bob@example.com", EmailVerified: true, Groups: []string{"ci-admins"}},
			map[string]auth.Role{"acme": auth.RoleAdmin, "ops": auth.RoleViewer}},
		{"group from another provider", sso.Identity{Provider: "other", Groups: []string{"ci-admins"}}, map[string]auth.Role{}},
		{"github org admin", sso.Identity{Provider: "github", GitHubOrgs: map[string]string{"acme": "admin"}},
			map[string]auth.Role{"acme": auth.RoleOwner, "oss": auth.RoleViewer}},
		{"github org member", sso.Identity{Provider: "github", GitHubOrgs: map[string]string{"acme": "member"}}, map[string]auth.Role{"oss": auth.RoleViewer}},
		{"github org claimed by an OIDC provider", sso.Identity{Provider: "corp", GitHubOrgs: map[string]string{"acme": "admin"}}, map[string]auth.Role{}},
	} {
		if diff := cmp.Diff(tc.want, sso.Roles(rules, tc.id)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

// browser follows redirects and keeps cookies, as a browser does.
func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 20 * time.Second}
}

// callback is a stand-in relying party's redirect endpoint: it records
// the code and state the provider sends back.
type callback struct {
	srv   *httptest.Server
	codes chan url.Values
}

func newCallback(t *testing.T) *callback {
	c := &callback{codes: make(chan url.Values, 4)}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.codes <- r.URL.Query()
		w.Write([]byte("ok"))
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *callback) url() string { return c.srv.URL + "/auth/callback" }

func attempt(stepUp bool) sso.Attempt {
	return sso.Attempt{State: "state-" + time.Now().Format("150405.000000"), Nonce: "nonce-1", Verifier: strings.Repeat("v", 50),
		StepUp: stepUp, Started: time.Now()}
}

// signIn goes through the OP's login page as a browser and returns the
// callback's query.
func signIn(t *testing.T, p sso.Provider, cb *callback, a sso.Attempt, user, password string) url.Values {
	t.Helper()
	u, err := p.AuthURL(context.Background(), cb.url(), a)
	if err != nil {
		t.Fatal(err)
	}
	b := browser()
	resp, err := b.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	page := ssotest.ReadPage(resp)
	resp, err = ssotest.SubmitLogin(b, resp.Request.URL.String(), page, user, password)
	if err != nil {
		t.Fatal(err)
	}
	ssotest.ReadPage(resp)
	select {
	case q := <-cb.codes:
		return q
	default:
		t.Fatalf("the OP did not redirect to the callback (ended at %s)", resp.Request.URL)
		return nil
	}
}

func TestOIDCAgainstARealProvider(t *testing.T) {
	cb := newCallback(t)
	op := ssotest.Start(t, []string{cb.url()}, []ssotest.User{
		{ID: "u1", Username: "alice", Password: "pw-alice", Email: "alice@example.com", EmailVerified: true, FirstName: "Alice", LastName: "A"},
	})
	p := sso.NewOIDC(sso.OIDCConfig{Name: "corp", Label: "Corp", Issuer: op.Issuer, ClientID: ssotest.ClientID,
		ClientSecret: ssotest.ClientSecret, Scopes: []string{"email", "profile"}, GroupsClaim: "groups"}, http.DefaultClient)
	ctx := context.Background()

	a := attempt(false)
	q := signIn(t, p, cb, a, "alice", "pw-alice")
	if q.Get("state") != a.State || q.Get("code") == "" {
		t.Fatalf("callback %v", q)
	}
	id, err := p.Finish(ctx, cb.url(), q.Get("code"), a)
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "u1" || id.Email != "alice@example.com" || !id.EmailVerified || id.Provider != "corp" || time.Since(id.AuthAt) > time.Minute {
		t.Errorf("identity %+v", id)
	}
	// The code is good once.
	if _, err := p.Finish(ctx, cb.url(), q.Get("code"), a); !errors.Is(err, sso.ErrRefused) {
		t.Errorf("code used twice: %v", err)
	}

	t.Run("wrong verifier", func(t *testing.T) {
		a := attempt(false)
		q := signIn(t, p, cb, a, "alice", "pw-alice")
		a.Verifier = strings.Repeat("w", 50)
		if _, err := p.Finish(ctx, cb.url(), q.Get("code"), a); !errors.Is(err, sso.ErrRefused) {
			t.Errorf("a stolen code without the PKCE verifier: %v", err)
		}
	})
	t.Run("wrong nonce", func(t *testing.T) {
		a := attempt(false)
		q := signIn(t, p, cb, a, "alice", "pw-alice")
		a.Nonce = "another"
		if _, err := p.Finish(ctx, cb.url(), q.Get("code"), a); !errors.Is(err, sso.ErrRefused) || !strings.Contains(err.Error(), "nonce") {
			t.Errorf("an ID token for another sign-in: %v", err)
		}
	})
	t.Run("step-up", func(t *testing.T) {
		a := attempt(true)
		u, _ := p.AuthURL(ctx, cb.url(), a)
		if pu, _ := url.Parse(u); pu.Query().Get("max_age") != "0" || pu.Query().Get("prompt") != "login" {
			t.Errorf("step-up URL %s asks for no new authentication", u)
		}
		q := signIn(t, p, cb, a, "alice", "pw-alice")
		id, err := p.Finish(ctx, cb.url(), q.Get("code"), a)
		if err != nil || id.AuthAt.Before(a.Started.Add(-time.Minute)) {
			t.Fatalf("step-up: %+v, %v", id, err)
		}
		// An authentication older than the step-up does not count.
		a = attempt(true)
		q = signIn(t, p, cb, a, "alice", "pw-alice")
		a.Started = time.Now().Add(10 * time.Minute)
		if _, err := p.Finish(ctx, cb.url(), q.Get("code"), a); !errors.Is(err, sso.ErrRefused) {
			t.Errorf("an authentication from before the step-up: %v", err)
		}
	})
}

func TestGitHubSignIn(t *testing.T) {
	gh := githubtest.NewServer(t, githubtest.Config{})
	cb := newCallback(t)
	gh.AddOAuthClient(githubtest.OAuthClient{ClientID: "Iv1.app", ClientSecret: "app-secret", CallbackURLs: []string{cb.url()}})
	gh.AddUser(githubtest.User{ID: 42, Login: "octo", Name: "Octo Cat", Email: "octo@example.com", EmailVerified: true,
		Orgs: map[string]string{"acme": "admin", "beta": "pending:member"}})
	gh.AddUser(githubtest.User{ID: 43, Login: "hidden", Email: "hidden@example.com", EmailVerified: true, EmailsHidden: true})
	p := sso.NewGitHub(sso.GitHubConfig{ClientID: "Iv1.app", ClientSecret: "app-secret", WebURL: gh.URL}, gh.URL, []string{"acme", "beta", "gamma"}, http.DefaultClient)
	ctx := context.Background()
	run := func(login string, a sso.Attempt) url.Values {
		t.Helper()
		gh.SignIn(login)
		u, err := p.AuthURL(ctx, cb.url(), a)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := browser().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		ssotest.ReadPage(resp)
		return <-cb.codes
	}
	a := attempt(false)
	q := run("octo", a)
	id, err := p.Finish(ctx, cb.url(), q.Get("code"), a)
	if err != nil {
		t.Fatal(err)
	}
	want := sso.Identity{Provider: "github", Subject: "42", Email: "octo@example.com", EmailVerified: true, Name: "Octo Cat",
		GitHubLogin: "octo", GitHubOrgs: map[string]string{"acme": "admin"}}
	id.AuthAt = time.Time{}
	if diff := cmp.Diff(want, id); diff != "" {
		t.Errorf("identity (-want +got):\n%s", diff)
	}
	if _, err := p.Finish(ctx, cb.url(), q.Get("code"), a); !errors.Is(err, sso.ErrRefused) {
		t.Errorf("code used twice: %v", err)
	}
	a = attempt(false)
	q = run("octo", a)
	a.Verifier = strings.Repeat("x", 50)
	if _, err := p.Finish(ctx, cb.url(), q.Get("code"), a); !errors.Is(err, sso.ErrRefused) {
		t.Errorf("wrong PKCE verifier: %v", err)
	}
	// Without the e-mail permission the address is not vouched for.
	a = attempt(false)
	q = run("hidden", a)
	if id, err := p.Finish(ctx, cb.url(), q.Get("code"), a); err != nil || id.EmailVerified || id.Email != "" {
		t.Errorf("hidden e-mail: %+v, %v", id, err)
	}
	// Nobody signed in on GitHub: the callback carries an error, no code.
	if q := run("", attempt(false)); q.Get("code") != "" || q.Get("error") != "access_denied" {
		t.Errorf("denied sign-in: %v", q)
	}
	if p.StepUp() {
		t.Error("GitHub counts as step-up without step_up: true")
	}
}
