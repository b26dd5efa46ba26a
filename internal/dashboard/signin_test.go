package dashboard_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
	"github.com/nimbus-build/nimbus/internal/store"
)

func auditActions(t *testing.T, e *env, org string) []string {
	t.Helper()
	list, err := e.h.CP.Store.Audit().List(context.Background(), store.AuditFilter{OrgID: org, Installation: true, Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range list {
		out = append(out, a.Action)
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A person signs in through a real OpenID Provider, gets the role the
// rules give their verified address, and signing out ends the session
// for good (the old cookie, replayed, is refused).
func TestSignInWithOIDC(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	resp, body := b.signIn("bob", "pw-bob")
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/ui/jobs" || !strings.Contains(body, "bob@example.com") {
		t.Fatalf("after sign-in: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	if !strings.Contains(body, "admin") {
		t.Error("the page does not show the admin role")
	}
	u, _ := url.Parse(e.h.URL)
	var sess *http.Cookie
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == "nimbus_session" {
			sess = c
		}
	}
	if sess == nil {
		t.Fatal("no session cookie")
	}
	for _, r := range resp.Request.Response.Header.Values("Set-Cookie") {
		if strings.Contains(r, "nimbus_session=") && (!strings.Contains(r, "HttpOnly") || !strings.Contains(r, "SameSite=Lax")) {
			t.Errorf("session cookie without HttpOnly or SameSite: %s", r)
		}
	}
	if !contains(auditActions(t, e, e.orgA), "user.signed_in") {
		t.Error("sign-in not audited")
	}
	resp, _ = b.post("/logout", url.Values{"csrf": {b.csrf()}})
	if resp.Request.URL.Path != "/login" {
		t.Errorf("sign-out ended at %s", resp.Request.URL)
	}
	// The cookie replayed after sign-out gets nothing.
	replay := e.browser()
	replay.Jar.SetCookies(u, []*http.Cookie{sess})
	resp, _ = replay.get("/ui/jobs")
	if resp.Request.URL.Path != "/login" {
		t.Errorf("revoked cookie reached %s", resp.Request.URL)
	}
	// A session cookie never authenticates the API.
	req, _ := http.NewRequest("GET", e.h.URL+"/api/v1/jobs", nil)
	req.AddCookie(sess)
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusUnauthorized {
		t.Errorf("API with a session cookie: %v %v", r.StatusCode, err)
	}
}

// Someone the rules give no role (or whose address is not verified)
// gets no session.
func TestSignInRefusedWithoutRole(t *testing.T) {
	e := newEnv(t)
	for _, who := range []string{"mallory", "ulrich"} {
		b := e.browser()
		resp, body := b.signIn(who, "pw-"+who)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "no rule") {
			t.Errorf("%s: %d %.300s", who, resp.StatusCode, body)
		}
		u, _ := url.Parse(e.h.URL)
		for _, c := range b.Jar.Cookies(u) {
			if c.Name == "nimbus_session" {
				t.Errorf("%s got a session cookie", who)
			}
		}
	}
	if !contains(auditActions(t, e, ""), "signin.refused") {
		t.Error("refused sign-in not audited")
	}
}

// The callback is bound to the browser that started the sign-in: a code
// planted in another browser (login CSRF), a replayed callback and a
// forged state are refused.
func TestCallbackAttacks(t *testing.T) {
	e := newEnv(t)
	// The attacker starts a sign-in and stops at the callback URL.
	attacker := e.browser()
	resp, err := attacker.Get(e.h.URL + "/login/corp")
	if err != nil {
		t.Fatal(err)
	}
	page := read(t, resp)
	nr := attacker.noRedirects()
	attacker.Client = nr
	resp, err = attacker.PostForm(resp.Request.URL.Scheme+"://"+resp.Request.URL.Host+"/login/username",
		url.Values{"id": {regexp.MustCompile(`name="id" value="([^"]+)"`).FindStringSubmatch(page)[1]}, "username": {"erin"}, "password": {"pw-erin"}})
	if err != nil {
		t.Fatal(err)
	}
	read(t, resp)
	next := resp.Header.Get("Location")
	for !strings.HasPrefix(next, e.h.URL+"/auth/callback") {
		u, _ := resp.Request.URL.Parse(next)
		if resp, err = nr.Get(u.String()); err != nil {
			t.Fatal(err)
		}
		read(t, resp)
		next = resp.Header.Get("Location")
	}
	callback := next
	// The victim's browser is sent to the attacker's callback.
	victim := e.browser()
	resp, err = victim.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	if body := read(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "sign in again") {
		t.Errorf("planted callback: %d", resp.StatusCode)
	}
	// A forged state in the attacker's own browser.
	forged := strings.Replace(callback, "state=", "state=x", 1)
	resp, _ = attacker.Get(forged)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("forged state: %d", resp.StatusCode)
	}
	// The sign-in cookie was used up by the failed try: the real one
	// fails too now, and a replay after a success as well.
	resp, _ = attacker.Get(callback)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("callback after the state was used: %d", resp.StatusCode)
	}
}

// "Sign in with GitHub" through the App's OAuth client (the emulator):
// membership of a GitHub org gives the role its rule says.
func TestSignInWithGitHub(t *testing.T) {
	e := newEnv(t)
	e.gh.AddUser(githubtest.User{ID: 7, Login: "octo", Name: "Octo", Email: "octo@users.example", EmailVerified: true, Orgs: map[string]string{"acme": "member"}})
	e.gh.AddUser(githubtest.User{ID: 8, Login: "stranger", Email: "s@users.example", EmailVerified: true, Orgs: map[string]string{"acme": "pending:member"}})
	e.gh.SignIn("octo")
	b := e.browser()
	resp, body := b.get("/login/github")
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/ui/jobs" || !strings.Contains(body, "developer") {
		t.Fatalf("GitHub sign-in: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	// A pending membership is no membership.
	e.gh.SignIn("stranger")
	resp, _ = e.browser().get("/login/github")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("pending member: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	// GitHub cannot re-ask for a password: step-up is refused (and says
	// why), so a GitHub session never creates tokens.
	resp, body = b.get("/ui/step-up?return=/ui/tokens")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "cannot confirm") {
		t.Errorf("step-up through GitHub: %d", resp.StatusCode)
	}
}

// Creating a token needs a recent authentication: a stale session is
// asked to confirm at the provider (max_age=0, a new password entry),
// then creates the token, which is shown once and works; revoking it in
// the dashboard stops it at once. Confirming as another person does not
// count.
func TestStepUpForTokens(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	b := e.browser()
	b.mustSignIn("bob", "pw-bob")
	csrf := b.csrf()
	// Age the sign-in past the step-up window.
	sess := currentSession(t, e, b)
	if err := e.h.CP.Store.WebSessions().SetAuth(ctx, sess.ID, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	form := url.Values{"csrf": {csrf}, "name": {"ci-main"}, "role": {"ci"}, "expires": {"7d"}}
	resp, body := b.post("/ui/tokens", form)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Nimbus-Step-Up") != "required" || strings.Contains(body, "nmbu_") {
		t.Fatalf("stale session creating a token: %d %s", resp.StatusCode, resp.Header)
	}
	if n := countTokens(t, e, "ci-main"); n != 0 {
		t.Fatalf("a token was created without step-up (%d)", n)
	}
	// Step-up, confirmed as someone else: refused.
	resp, page := b.get("/ui/step-up?return=/ui/tokens")
	resp, body = loginAt(t, b, resp, page, "alice", "pw-alice")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "another account") {
		t.Fatalf("step-up as another person: %d", resp.StatusCode)
	}
	if resp, _ := b.post("/ui/tokens", form); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("after a refused step-up: %d", resp.StatusCode)
	}
	// Step-up as bob.
	resp, page = b.get("/ui/step-up?return=/ui/tokens")
	resp, _ = loginAt(t, b, resp, page, "bob", "pw-bob")
	if resp.StatusCode != 200 || resp.Request.URL.Path != "/ui/tokens" {
		t.Fatalf("after step-up: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	resp, body = b.post("/ui/tokens", form)
	secret := regexp.MustCompile(`nmbu_[a-z0-9]+`).FindString(body)
	if resp.StatusCode != http.StatusCreated || secret == "" || !strings.Contains(body, "ci</strong>") {
		t.Fatalf("create token: %d", resp.StatusCode)
	}
	var who apiv1.Whoami
	if _, err := e.h.Client(secret).Do(ctx, "GET", "/api/v1/whoami", nil, &who); err != nil || who.Role != "ci" || who.Org != e.orgA {
		t.Fatalf("the new token: %+v %v", who, err)
	}
	// Shown once: the list page does not show it again.
	if _, body := b.get("/ui/tokens"); strings.Contains(body, secret) {
		t.Error("the secret is shown again")
	}
	// An admin may not mint an owner token, step-up or not.
	owner := url.Values{"csrf": {csrf}, "name": {"root"}, "role": {"owner"}, "expires": {"7d"}}
	if resp, _ := b.post("/ui/tokens", owner); resp.StatusCode != http.StatusForbidden {
		t.Errorf("admin minting an owner token: %d", resp.StatusCode)
	}
	resp, _ = b.post("/ui/tokens/"+who.ID+"/revoke", url.Values{"csrf": {csrf}})
	if resp.StatusCode != 200 {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if _, err := e.h.Client(secret).Do(ctx, "GET", "/api/v1/whoami", nil, &who); !apiclient.IsStatus(err, http.StatusUnauthorized) {
		// The authenticator may keep an answer for up to a second.
		deadline := time.Now().Add(3 * time.Second)
		for !apiclient.IsStatus(err, http.StatusUnauthorized) && time.Now().Before(deadline) {
			_, err = e.h.Client(secret).Do(ctx, "GET", "/api/v1/whoami", nil, &who)
		}
		if !apiclient.IsStatus(err, http.StatusUnauthorized) {
			t.Errorf("revoked token still works: %v", err)
		}
	}
	acts := auditActions(t, e, e.orgA)
	for _, a := range []string{"user.stepped_up", "signin.step_up_refused", "token.created", "token.revoked"} {
		if !contains(acts, a) {
			t.Errorf("%s not audited", a)
		}
	}
}

// loginAt fills the OP's login form the browser was sent to.
func loginAt(t *testing.T, b *browser, resp *http.Response, page, user, password string) (*http.Response, string) {
	t.Helper()
	if !strings.Contains(page, `name="password"`) {
		t.Fatalf("not at the OP's login form (%s): %.300s", resp.Request.URL, page)
	}
	resp, err := submitLogin(b, resp, page, user, password)
	if err != nil {
		t.Fatal(err)
	}
	return resp, read(t, resp)
}

func currentSession(t *testing.T, e *env, b *browser) struct{ ID string } {
	t.Helper()
	u, _ := url.Parse(e.h.URL)
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == e.h.CP.Web.CookieName() {
			req, _ := http.NewRequest("GET", "/", nil)
			req.AddCookie(c)
			s, err := e.h.CP.Web.Load(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			return struct{ ID string }{s.ID}
		}
	}
	t.Fatal("no session cookie")
	return struct{ ID string }{}
}

func countTokens(t *testing.T, e *env, name string) int {
	t.Helper()
	list, err := e.h.CP.Store.Tokens().ListAPITokens(context.Background(), e.orgA)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tok := range list {
		if tok.Name == name {
			n++
		}
	}
	return n
}
