package githubtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Config configures a Server.
type Config struct {
	// TokenLifetime is how long installation tokens are valid; 1 h (as on
	// GitHub) by default. Shorten it to exercise refreshing.
	TokenLifetime time.Duration
	// Now is the emulator's clock for JWT checks and token expiry;
	// time.Now by default. Share a fake clock with the client under test.
	Now func() time.Time
}

// App is a GitHub App registered with the emulator.
type App struct {
	ID        int64
	ClientID  string // optional; accepted as the JWT issuer when set
	PublicKey *rsa.PublicKey
}

// Installation is an App's installation on an account.
type Installation struct {
	ID          int64
	AppID       int64
	Account     string // the account's login
	AccountID   int64
	AccountType string // "Organization" or "User"
	// Repositories are the "owner/name"s the installation may act on;
	// empty means all repositories of the account.
	Repositories []string
}

// Runner is a runner created through the emulator.
type Runner struct {
	ID             int64
	Name           string
	Labels         []string
	RunnerGroupID  int64
	WorkFolder     string
	Org            string // set for an org runner
	Repo           string // "owner/name", set for a repository runner
	InstallationID int64
	Deleted        bool
}

// Request is one request the emulator answered.
type Request struct {
	Method string
	Path   string
	Status int
}

type issuedToken struct {
	installationID int64
	expiresAt      time.Time
}

// Server is the emulator. Its methods are safe for concurrent use; the
// setup methods (AddApp, AddInstallation) fail the test on misuse and must
// be called from the test's goroutine.
type Server struct {
	// URL is the API root to give a client as its base URL.
	URL string

	tb  testing.TB
	cfg Config
	srv *httptest.Server

	mu            sync.Mutex
	apps          map[int64]App
	installations map[int64]Installation
	tokens        map[string]issuedToken
	tokensIssued  map[int64]int
	runners       []Runner
	nextRunnerID  int64
	faults        []*Fault
	requests      []Request
	tokenGate     chan struct{} // non-nil while token issuance is paused
	tokensPending int

	hookURL        string
	hookSecret     []byte
	hookDeliveries []HookDelivery
	nextDeliveryID int64

	runs  map[int64]WorkflowRun
	pulls map[string][]PullRequest // by lower-case "owner/name"

	oauth *oauthState // "Sign in with GitHub" (oauth.go)
}

// NewServer starts an emulator on 127.0.0.1 with a random port and closes it
// when the test ends.
func NewServer(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Server{
		tb:            tb,
		cfg:           cfg,
		apps:          make(map[int64]App),
		installations: make(map[int64]Installation),
		tokens:        make(map[string]issuedToken),
		tokensIssued:  make(map[int64]int),
		nextRunnerID:  1000,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /app/installations/{installation_id}/access_tokens", s.createInstallationToken)
	mux.HandleFunc("POST /orgs/{org}/actions/runners/generate-jitconfig", s.generateJITConfig)
	mux.HandleFunc("POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig", s.generateJITConfig)
	mux.HandleFunc("DELETE /orgs/{org}/actions/runners/{runner_id}", s.deleteRunner)
	mux.HandleFunc("DELETE /repos/{owner}/{repo}/actions/runners/{runner_id}", s.deleteRunner)
	mux.HandleFunc("GET /app/hook/deliveries", s.listHookDeliveries)
	mux.HandleFunc("GET /repos/{owner}/{repo}/actions/runs/{run_id}", s.getWorkflowRun)
	mux.HandleFunc("GET /repos/{owner}/{repo}/pulls", s.listPulls)
	mux.HandleFunc("POST /app/hook/deliveries/{delivery_id}/attempts", s.redeliverHook)
	mux.HandleFunc("GET /login/oauth/authorize", s.oauthAuthorize)
	mux.HandleFunc("POST /login/oauth/access_token", s.oauthAccessToken)
	mux.HandleFunc("GET /user", s.getUser)
	mux.HandleFunc("GET /user/emails", s.getUserEmails)
	mux.HandleFunc("GET /user/memberships/orgs/{org}", s.getUserOrgMembership)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "Not Found")
	})
	s.srv = httptest.NewServer(s.middleware(mux))
	s.URL = s.srv.URL
	tb.Cleanup(s.srv.Close)
	return s
}

// Client returns an HTTP client for the server.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// AddApp registers an App.
func (s *Server) AddApp(app App) {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if app.ID <= 0 || app.PublicKey == nil {
		s.tb.Fatalf("githubtest: AddApp needs a positive ID and a public key")
	}
	if _, dup := s.apps[app.ID]; dup {
		s.tb.Fatalf("githubtest: app %d added twice", app.ID)
	}
	s.apps[app.ID] = app
}

// AddInstallation installs a registered App on an account.
func (s *Server) AddInstallation(inst Installation) {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.apps[inst.AppID]; !ok {
		s.tb.Fatalf("githubtest: installation %d names unknown app %d", inst.ID, inst.AppID)
	}
	if inst.ID <= 0 || inst.Account == "" || (inst.AccountType != "Organization" && inst.AccountType != "User") {
		s.tb.Fatalf("githubtest: installation needs a positive ID, an account and an AccountType of Organization or User")
	}
	if _, dup := s.installations[inst.ID]; dup {
		s.tb.Fatalf("githubtest: installation %d added twice", inst.ID)
	}
	if inst.AccountID == 0 {
		inst.AccountID = inst.ID + 5000000
	}
	inst.Repositories = slices.Clone(inst.Repositories)
	s.installations[inst.ID] = inst
}

// TokensIssued returns how many installation tokens were issued for the
// installation.
func (s *Server) TokensIssued(installationID int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokensIssued[installationID]
}

// RevokeTokens invalidates every token issued so far for the installation,
// as when an installation's permissions change.
func (s *Server) RevokeTokens(installationID int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tok, it := range s.tokens {
		if it.installationID == installationID {
			delete(s.tokens, tok)
		}
	}
}

// Runners returns every runner created so far, deleted ones included, in
// creation order.
func (s *Server) Runners() []Runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Runner, len(s.runners))
	for i, r := range s.runners {
		r.Labels = slices.Clone(r.Labels)
		out[i] = r
	}
	return out
}

// Requests returns every request answered so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// PauseTokens holds every installation token request until release is
// called, so that a test can make callers pile up behind one request. Call
// it from the test's goroutine.
// PendingTokenRequests tells how many are held.
func (s *Server) PauseTokens() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gate := make(chan struct{})
	s.tokenGate = gate
	var once sync.Once
	release = func() {
		once.Do(func() {
			s.mu.Lock()
			if s.tokenGate == gate {
				s.tokenGate = nil
			}
			s.mu.Unlock()
			close(gate)
		})
	}
	s.tb.Cleanup(release) // a held request would keep Close waiting
	return release
}

// PendingTokenRequests returns how many token requests PauseTokens holds.
func (s *Server) PendingTokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokensPending
}

func (s *Server) waitTokenGate(r *http.Request) bool {
	s.mu.Lock()
	gate := s.tokenGate
	if gate == nil {
		s.mu.Unlock()
		return true
	}
	s.tokensPending++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.tokensPending--
		s.mu.Unlock()
	}()
	select {
	case <-gate:
		return true
	case <-r.Context().Done():
		return false
	}
}

// middleware records requests and applies injected faults.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		if f := s.takeFault(r); f != nil {
			f.write(rec)
		} else {
			next.ServeHTTP(rec, r)
		}
		s.mu.Lock()
		s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Status: rec.status})
		s.mu.Unlock()
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) createInstallationToken(w http.ResponseWriter, r *http.Request) {
	jwt, ok := bearer(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "A JSON web token could not be decoded")
		return
	}
	now := s.cfg.Now()
	app, err := s.verifyAppJWT(jwt, now)
	if err != nil {
		writeError(w, http.StatusUnauthorized, err.Error())
		return
	}
	id, err := strconv.ParseInt(r.PathValue("installation_id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	if !s.waitTokenGate(r) {
		writeError(w, http.StatusServiceUnavailable, "request canceled while token issuance was paused")
		return
	}
	s.mu.Lock()
	inst, ok := s.installations[id]
	if !ok || inst.AppID != app.ID {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	tok := "ghs_" + randomString(36)
	exp := now.Add(s.cfg.TokenLifetime).UTC().Truncate(time.Second)
	s.tokens[tok] = issuedToken{installationID: id, expiresAt: exp}
	s.tokensIssued[id]++
	s.mu.Unlock()

	selection := "all"
	if len(inst.Repositories) > 0 {
		selection = "selected"
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"token":      tok,
		"expires_at": exp.Format(time.RFC3339),
		"permissions": map[string]string{
			"administration":                   "write",
			"organization_self_hosted_runners": "write",
			"metadata":                         "read",
		},
		"repository_selection": selection,
	})
}

// authInstallation checks the installation token of r and that its
// installation covers the org or repository named by the path. It writes
// the error response and returns false when not.
func (s *Server) authInstallation(w http.ResponseWriter, r *http.Request) (Installation, string, string, bool) {
	tok, ok := bearer(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "Requires authentication")
		return Installation{}, "", "", false
	}
	s.mu.Lock()
	it, ok := s.tokens[tok]
	inst := s.installations[it.installationID]
	s.mu.Unlock()
	if !ok || !s.cfg.Now().Before(it.expiresAt) {
		writeError(w, http.StatusUnauthorized, "Bad credentials")
		return Installation{}, "", "", false
	}
	org := r.PathValue("org")
	var repo string
	if org == "" {
		repo = r.PathValue("owner") + "/" + r.PathValue("repo")
	}
	if !inst.covers(org, repo) {
		writeError(w, http.StatusNotFound, "Not Found")
		return Installation{}, "", "", false
	}
	return inst, org, repo, true
}

func (inst Installation) covers(org, repo string) bool {
	if org != "" {
		return inst.AccountType == "Organization" && strings.EqualFold(inst.Account, org)
	}
	owner, _, _ := strings.Cut(repo, "/")
	if !strings.EqualFold(inst.Account, owner) {
		return false
	}
	return len(inst.Repositories) == 0 || slices.ContainsFunc(inst.Repositories, func(r string) bool {
		return strings.EqualFold(r, repo)
	})
}

func (s *Server) generateJITConfig(w http.ResponseWriter, r *http.Request) {
	inst, org, repo, ok := s.authInstallation(w, r)
	if !ok {
		return
	}
	var body struct {
		Name          *string  `json:"name"`
		RunnerGroupID *int64   `json:"runner_group_id"`
		Labels        []string `json:"labels"`
		WorkFolder    *string  `json:"work_folder"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "Problems parsing JSON")
		return
	}
	switch {
	case body.Name == nil || *body.Name == "":
		writeError(w, http.StatusUnprocessableEntity, "Invalid request.\n\n\"name\" wasn't supplied.")
		return
	case body.RunnerGroupID == nil:
		writeError(w, http.StatusUnprocessableEntity, "Invalid request.\n\n\"runner_group_id\" wasn't supplied.")
		return
	case len(body.Labels) == 0:
		writeError(w, http.StatusUnprocessableEntity, "Invalid request.\n\n\"labels\" wasn't supplied.")
		return
	case len(body.Labels) > 100:
		writeError(w, http.StatusUnprocessableEntity, "Invalid request.\n\nFor 'properties/labels', is too long (maximum is 100 items).")
		return
	case slices.Contains(body.Labels, ""):
		writeError(w, http.StatusUnprocessableEntity, "Invalid request.\n\nFor 'items', \"\" is too short (minimum is 1 character).")
		return
	}
	workFolder := "_work"
	if body.WorkFolder != nil {
		workFolder = *body.WorkFolder
	}

	s.mu.Lock()
	for _, old := range s.runners {
		if !old.Deleted && strings.EqualFold(old.Name, *body.Name) && strings.EqualFold(old.Org, org) && strings.EqualFold(old.Repo, repo) {
			s.mu.Unlock()
			writeError(w, http.StatusConflict, "Already exists - A runner with the name "+*body.Name+" already exists.")
			return
		}
	}
	s.nextRunnerID++
	rn := Runner{
		ID: s.nextRunnerID, Name: *body.Name, Labels: slices.Clone(body.Labels),
		RunnerGroupID: *body.RunnerGroupID, WorkFolder: workFolder,
		Org: org, Repo: repo, InstallationID: inst.ID,
	}
	s.runners = append(s.runners, rn)
	s.mu.Unlock()

	scopeURL := "https://github.com/" + org
	if repo != "" {
		scopeURL = "https://github.com/" + repo
	}
	encoded, err := encodeJITDocument(JITDocument{
		RunnerID: rn.ID, RunnerName: rn.Name, Labels: rn.Labels, RunnerGroupID: rn.RunnerGroupID,
		WorkFolder: rn.WorkFolder, URL: scopeURL, Credential: randomString(40),
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	labels := make([]map[string]any, len(rn.Labels))
	for i, l := range rn.Labels {
		labels[i] = map[string]any{"id": i + 1, "name": l, "type": "custom"}
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"runner": map[string]any{
			"id": rn.ID, "name": rn.Name, "os": "unknown", "status": "offline",
			"busy": false, "runner_group_id": rn.RunnerGroupID, "labels": labels,
		},
		"encoded_jit_config": encoded,
	})
}

func (s *Server) deleteRunner(w http.ResponseWriter, r *http.Request) {
	_, org, repo, ok := s.authInstallation(w, r)
	if !ok {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("runner_id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.runners {
		rn := &s.runners[i]
		if rn.ID == id && !rn.Deleted && strings.EqualFold(rn.Org, org) && strings.EqualFold(rn.Repo, repo) {
			rn.Deleted = true
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	writeError(w, http.StatusNotFound, "Not Found")
}

// bearer returns the credential of an "Authorization: Bearer X" or
// "Authorization: token X" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	for _, scheme := range []string{"Bearer ", "bearer ", "token "} {
		if tok, ok := strings.CutPrefix(h, scheme); ok && tok != "" {
			return tok, true
		}
	}
	return "", false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-GitHub-Request-Id", randomString(8))
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers like GitHub: {"message", "documentation_url", "status"}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{
		"message":           msg,
		"documentation_url": "https://docs.github.com/rest",
		"status":            strconv.Itoa(status),
	})
}

const alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphanumeric[int(b[i])%len(alphanumeric)]
	}
	return string(b)
}
