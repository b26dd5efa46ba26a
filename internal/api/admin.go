package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nimbus-build/nimbus/internal/admin"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/store"
)

func (s *Server) whoami(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	writeJSON(w, http.StatusOK, apiv1.Whoami{Kind: string(p.Kind), Org: p.Org, ID: p.ID, Name: p.Name, Role: string(p.Role)})
	return nil
}

const (
	defaultJoinTokenTTL = 24 * time.Hour
	maxJoinTokenTTL     = 30 * 24 * time.Hour
	maxNameLen          = 100
)

func validName(what, n string) error {
	if n == "" || len(n) > maxNameLen || !utf8.ValidString(n) || strings.ContainsFunc(n, func(r rune) bool { return r < ' ' }) {
		return badRequest("%s: 1-%d printable characters", what, maxNameLen)
	}
	return nil
}

func (s *Server) createJoinToken(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var req apiv1.CreateJoinToken
	if err := decode(w, r, maxBody, &req); err != nil {
		return err
	}
	labels, err := jobs.NormalizeLabels(req.Labels)
	if err != nil {
		return err
	}
	// An agent may serve only its join token's labels, and a job runs on
	// an agent that has all of the job's: an agent without labels could
	// run only jobs that ask for none, never a GitHub job. Such a token is
	// a mistake, refused rather than handed out.
	if len(labels) == 0 {
		return badRequest("labels: at least one is required (the labels the agent may serve, e.g. self-hosted,linux,x64,nimbus): an agent without labels could run only jobs that ask for none")
	}
	if req.MaxJobs < 0 || req.MaxJobs > 1024 {
		return badRequest("max_jobs: 0 (no limit) to 1024")
	}
	ttl := defaultJoinTokenTTL
	if req.ExpiresSeconds != 0 {
		ttl = time.Duration(req.ExpiresSeconds) * time.Second
		if ttl < time.Minute || ttl > maxJoinTokenTTL {
			return badRequest("expires_seconds: 60 to %d", int(maxJoinTokenTTL/time.Second))
		}
	}
	jt, err := s.Fleet.CreateJoinToken(r.Context(), p, labels, req.MaxJobs, ttl)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiv1.JoinToken{ID: jt.ID, Token: jt.Secret, Labels: labels, MaxJobs: jt.MaxJobs, ExpiresAt: jt.ExpiresAt})
	return nil
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	list, err := s.Fleet.List(r.Context(), p.Org)
	if err != nil {
		return err
	}
	out := make([]apiv1.Agent, len(list))
	for i, a := range list {
		out[i] = agentJSON(a, s.Now())
	}
	writeJSON(w, http.StatusOK, apiv1.AgentList{Agents: out})
	return nil
}

func (s *Server) disableAgent(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	id, err := pathID(r, "agt", "agent")
	if err != nil {
		return err
	}
	a, err := s.Fleet.Disable(r.Context(), p, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, agentJSON(a, s.Now()))
	return nil
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var req apiv1.CreateToken
	if err := decode(w, r, maxBody, &req); err != nil {
		return err
	}
	if err := validName("name", req.Name); err != nil {
		return err
	}
	if !auth.Role(req.Role).Valid() {
		return badRequest("role: %q is not one of viewer, developer, ci, admin, owner", req.Role)
	}
	if req.ExpiresSeconds < 0 || req.ExpiresSeconds > 10*365*24*3600 {
		return badRequest("expires_seconds: 0 (never) to ten years")
	}
	tok, err := s.Admin.CreateToken(r.Context(), p, req.Name, req.Role, time.Duration(req.ExpiresSeconds)*time.Second)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, newTokenJSON(tok))
	return nil
}

// newTokenJSON shows a token just created, with its secret (this once).
func newTokenJSON(t admin.Token) apiv1.Token {
	out := tokenJSON(t.APIToken)
	out.Secret = t.Secret
	return out
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	list, err := s.Admin.ListTokens(r.Context(), p.Org)
	if err != nil {
		return err
	}
	out := make([]apiv1.Token, len(list))
	for i, t := range list {
		out[i] = tokenJSON(t)
	}
	writeJSON(w, http.StatusOK, apiv1.TokenList{Tokens: out})
	return nil
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	id, err := pathID(r, "tok", "token")
	if err != nil {
		return err
	}
	t, err := s.Admin.RevokeToken(r.Context(), p, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokenJSON(t))
	return nil
}

func (s *Server) listOrgs(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	list, err := s.Admin.ListOrgs(r.Context())
	if err != nil {
		return err
	}
	out := make([]apiv1.Org, len(list))
	for i, o := range list {
		out[i] = orgJSON(o)
	}
	writeJSON(w, http.StatusOK, apiv1.OrgList{Orgs: out})
	return nil
}

func validOrgName(n string) error {
	if len(n) < 1 || len(n) > 64 {
		return badRequest("name: 1-64 characters")
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return badRequest("name: lowercase letters, digits, - and _ only")
		}
	}
	return nil
}

func (s *Server) createOrg(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var req apiv1.CreateOrg
	if err := decode(w, r, maxBody, &req); err != nil {
		return err
	}
	if err := validOrgName(req.Name); err != nil {
		return err
	}
	if req.GitHubID < 0 || len(req.GitHubLogin) > 100 {
		return badRequest("github_id / github_login: out of range")
	}
	if (req.GitHubID == 0) != (req.GitHubLogin == "") {
		return badRequest("github_id and github_login go together: give both (the account's numeric id and login) or neither")
	}
	o, err := s.Admin.CreateOrg(r.Context(), p, req.Name, req.GitHubID, req.GitHubLogin)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiv1.CreatedOrg{Org: orgJSON(o.Org), AdminToken: newTokenJSON(o.Admin)})
	return nil
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	q := r.URL.Query()
	f := store.AuditFilter{OrgID: p.Org, Limit: 100, Installation: p.Role == auth.RoleOwner}
	if b := q.Get("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 1 {
			return badRequest("before: an audit entry id")
		}
		f.BeforeID = n
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return badRequest("limit: 1-1000")
		}
		f.Limit = n
	}
	list, err := s.Store.Audit().List(r.Context(), f)
	if err != nil {
		return err
	}
	out := apiv1.AuditList{Entries: make([]apiv1.AuditEntry, len(list))}
	for i, e := range list {
		out.Entries[i] = apiv1.AuditEntry{ID: e.ID, At: e.At, Actor: e.Actor, Action: e.Action, Target: e.Target, Detail: e.Detail}
	}
	if len(list) == f.Limit {
		out.Next = strconv.FormatInt(list[len(list)-1].ID, 10)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	keys := s.Keyring.Keys()
	out := make([]apiv1.SigningKey, len(keys))
	for i, k := range keys {
		out[i] = apiv1.SigningKey(k)
	}
	writeJSON(w, http.StatusOK, apiv1.KeyList{Keys: out})
	return nil
}

func (s *Server) rotateKeys(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	if _, err := s.Admin.RotateSigningKey(r.Context(), p); err != nil {
		return err
	}
	return s.listKeys(w, r, p)
}

func (s *Server) rotateWebhookSecret(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	secret, n, err := s.Admin.AddWebhookSecret(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiv1.WebhookSecret{Secret: secret, Count: n})
	return nil
}

func (s *Server) retireWebhookSecrets(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	n, err := s.Admin.RetireWebhookSecrets(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, apiv1.WebhookSecret{Count: n})
	return nil
}

// linkOrg links an org to a GitHub account, so that account's webhooks
// create jobs in it. Only an owner may: whoever links an account receives
// its jobs, and with them its code.
func (s *Server) linkOrg(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	id, err := pathID(r, "org", "org")
	if err != nil {
		return err
	}
	var req apiv1.CreateOrg
	if err := decode(w, r, maxBody, &req); err != nil {
		return err
	}
	if req.Name != "" {
		return badRequest("name: cannot be changed here")
	}
	if req.GitHubID <= 0 || req.GitHubLogin == "" || len(req.GitHubLogin) > 100 {
		return badRequest("github_id and github_login: the GitHub account's numeric id and login")
	}
	o, err := s.Admin.LinkGitHub(r.Context(), p, id, req.GitHubID, req.GitHubLogin)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, orgJSON(o))
	return nil
}
