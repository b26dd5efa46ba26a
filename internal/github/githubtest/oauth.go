package githubtest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// OAuthClient is a GitHub App's OAuth client ("Sign in with GitHub" as
// the App: user-to-server tokens).
type OAuthClient struct {
	ClientID     string
	ClientSecret string
	// CallbackURLs are the redirect URIs GitHub accepts for the client;
	// empty accepts any.
	CallbackURLs []string
}

// User is a GitHub account that can sign in through an OAuth client.
type User struct {
	ID    int64
	Login string
	Name  string
	// Email is the primary address; EmailVerified says GitHub verified it.
	// EmailsHidden answers /user/emails with 403, as GitHub does when the
	// App lacks the "Email addresses" permission.
	Email         string
	EmailVerified bool
	EmailsHidden  bool
	// Orgs are the user's org memberships: login → "admin" or "member"
	// (active); a "pending:" prefix makes the membership pending.
	Orgs map[string]string
}

type oauthState struct {
	clients  map[string]OAuthClient
	users    map[string]User // by login
	signedIn string          // the login of the browser's GitHub session
	codes    map[string]oauthCode
	tokens   map[string]string // user token → login
}

type oauthCode struct {
	clientID, redirectURI, challenge, login string
	expires                                 time.Time
}

func (s *Server) oauthLocked() *oauthState {
	if s.oauth == nil {
		s.oauth = &oauthState{clients: map[string]OAuthClient{}, users: map[string]User{}, codes: map[string]oauthCode{}, tokens: map[string]string{}}
	}
	return s.oauth
}

// AddOAuthClient registers an OAuth client.
func (s *Server) AddOAuthClient(c OAuthClient) {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.ClientID == "" || c.ClientSecret == "" {
		s.tb.Fatalf("githubtest: an OAuth client needs an id and a secret")
	}
	s.oauthLocked().clients[c.ClientID] = c
}

// AddUser adds (or replaces) a GitHub account.
func (s *Server) AddUser(u User) {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if u.ID <= 0 || u.Login == "" {
		s.tb.Fatalf("githubtest: a user needs a positive ID and a login")
	}
	s.oauthLocked().users[strings.ToLower(u.Login)] = u
}

// SignIn makes login the account the browser is signed in to on GitHub:
// the authorize endpoint then approves at once, as GitHub does for an App
// the person authorized before. "" signs out (authorize then refuses).
func (s *Server) SignIn(login string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oauthLocked().signedIn = strings.ToLower(login)
}

// authorize is GET /login/oauth/authorize: it redirects to the client's
// callback with a one-time code (10 minutes), or with
// error=access_denied when nobody is signed in.
func (s *Server) oauthAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	o := s.oauthLocked()
	c, ok := o.clients[q.Get("client_id")]
	login := o.signedIn
	s.mu.Unlock()
	redirect := q.Get("redirect_uri")
	if !ok {
		http.Error(w, "The client_id is not valid.", http.StatusNotFound)
		return
	}
	if len(c.CallbackURLs) > 0 && !containsString(c.CallbackURLs, redirect) {
		http.Error(w, "The redirect_uri MUST match the registered callback URL for this application.", http.StatusBadRequest)
		return
	}
	if q.Get("code_challenge") != "" && q.Get("code_challenge_method") != "S256" {
		http.Error(w, "code_challenge_method must be S256", http.StatusBadRequest)
		return
	}
	u, err := url.Parse(redirect)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		http.Error(w, "bad redirect_uri", http.StatusBadRequest)
		return
	}
	back := u.Query()
	back.Set("state", q.Get("state"))
	if login == "" {
		back.Set("error", "access_denied")
	} else {
		code := randomString(20)
		s.mu.Lock()
		o.codes[code] = oauthCode{clientID: c.ClientID, redirectURI: redirect, challenge: q.Get("code_challenge"), login: login,
			expires: s.cfg.Now().Add(10 * time.Minute)}
		s.mu.Unlock()
		back.Set("code", code)
	}
	u.RawQuery = back.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// oauthAccessToken is POST /login/oauth/access_token. As on GitHub, a bad
// code is a 200 whose body names the error.
func (s *Server) oauthAccessToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "Problems parsing form")
		return
	}
	fail := func(code, desc string) {
		writeJSON(w, http.StatusOK, map[string]string{"error": code, "error_description": desc})
	}
	id, secret, code := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret"), r.PostForm.Get("code")
	s.mu.Lock()
	o := s.oauthLocked()
	c, ok := o.clients[id]
	grant, granted := o.codes[code]
	delete(o.codes, code) // one use, even a failed one
	s.mu.Unlock()
	switch {
	case !ok || subtle.ConstantTimeCompare([]byte(secret), []byte(c.ClientSecret)) != 1:
		fail("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.")
		return
	case !granted || grant.clientID != id || !s.cfg.Now().Before(grant.expires):
		fail("bad_verification_code", "The code passed is incorrect or expired.")
		return
	case r.PostForm.Get("redirect_uri") != "" && r.PostForm.Get("redirect_uri") != grant.redirectURI:
		fail("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application.")
		return
	}
	if grant.challenge != "" {
		h := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if base64.RawURLEncoding.EncodeToString(h[:]) != grant.challenge {
			fail("bad_verification_code", "The code_verifier does not match the code_challenge.")
			return
		}
	}
	tok := "ghu_" + randomString(36)
	s.mu.Lock()
	o.tokens[tok] = grant.login
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"access_token": tok, "token_type": "bearer", "scope": ""})
}

// oauthUser authenticates a user token.
func (s *Server) oauthUser(w http.ResponseWriter, r *http.Request) (User, bool) {
	tok, ok := bearer(r)
	s.mu.Lock()
	o := s.oauthLocked()
	login, known := o.tokens[tok]
	u := o.users[login]
	s.mu.Unlock()
	if !ok || !known {
		writeError(w, http.StatusUnauthorized, "Bad credentials")
		return User{}, false
	}
	return u, true
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	u, ok := s.oauthUser(w, r)
	if !ok {
		return
	}
	var email any
	if u.Email != "" && !u.EmailsHidden {
		email = u.Email
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": u.ID, "login": u.Login, "name": u.Name, "email": email, "type": "User"})
}

func (s *Server) getUserEmails(w http.ResponseWriter, r *http.Request) {
	u, ok := s.oauthUser(w, r)
	if !ok {
		return
	}
	if u.EmailsHidden {
		writeError(w, http.StatusForbidden, "Resource not accessible by integration")
		return
	}
	list := []map[string]any{}
	if u.Email != "" {
		list = append(list, map[string]any{"email": u.Email, "primary": true, "verified": u.EmailVerified, "visibility": "private"})
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) getUserOrgMembership(w http.ResponseWriter, r *http.Request) {
	u, ok := s.oauthUser(w, r)
	if !ok {
		return
	}
	org := r.PathValue("org")
	for login, role := range u.Orgs {
		if !strings.EqualFold(login, org) {
			continue
		}
		state := "active"
		if p, ok := strings.CutPrefix(role, "pending:"); ok {
			state, role = "pending", p
		}
		writeJSON(w, http.StatusOK, map[string]any{"state": state, "role": role,
			"organization": map[string]any{"login": login}, "user": map[string]any{"login": u.Login, "id": strconv.FormatInt(u.ID, 10)}})
		return
	}
	writeError(w, http.StatusNotFound, "Not Found")
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
