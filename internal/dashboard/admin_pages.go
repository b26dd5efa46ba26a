package dashboard

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nimbus-build/nimbus/internal/admin"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/store"
)

// listPage bounds the lists read whole from a service (an org's agents,
// tokens): a page shows listPage of them.
const listPage = 100

// pageOf returns the page'th slice of n items (from 0) and whether
// another follows.
func pageOf(r *http.Request, n int) (from, to, page int, more bool) {
	page, _ = strconv.Atoi(r.URL.Query().Get("page"))
	page = max(page, 0)
	from = min(page*listPage, n)
	to = min(from+listPage, n)
	return from, to, page, to < n
}

type agentRow struct {
	Agent  store.Agent
	Status string
	Busy   int
}

type agentsData struct {
	Rows       []agentRow
	Page       int
	More       bool
	CanDisable func(store.Agent) bool
}

func agentStatus(a store.Agent, now time.Time) string {
	switch {
	case !a.DisabledAt.IsZero():
		return "disabled"
	case now.Sub(a.LastSeenAt) < onlineWithin:
		return "online"
	}
	return "offline"
}

func (s *Server) agentsPage(w http.ResponseWriter, r *http.Request, c *call) error {
	fv, err := s.fleetView(r.Context(), c.Session.Org)
	if err != nil {
		return err
	}
	from, to, page, more := pageOf(r, len(fv.agents))
	d := agentsData{Page: page, More: more, CanDisable: func(a store.Agent) bool {
		return a.DisabledAt.IsZero() && c.Can("agents.disable") && rank(auth.Role(a.Role)) <= rank(c.Principal.Role)
	}}
	now := s.Now()
	for _, a := range fv.agents[from:to] {
		d.Rows = append(d.Rows, agentRow{Agent: a, Status: agentStatus(a, now), Busy: fv.busy[a.ID]})
	}
	return s.render(w, r, c, http.StatusOK, "agents", "Agents", "agents", d)
}

func rank(r auth.Role) int { return slices.Index(auth.Roles, r) }

func (s *Server) disableAgent(w http.ResponseWriter, r *http.Request, c *call) error {
	id := r.PathValue("id")
	if !ids.Valid("agt", id) {
		return notFound("agent")
	}
	if _, err := s.Fleet.Disable(r.Context(), c.Principal, id); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/agents", http.StatusSeeOther)
	return nil
}

type sessionsData struct {
	Enabled bool
	Rows    []store.Session
	Page    int
	More    bool
}

func (s *Server) sessionsPage(w http.ResponseWriter, r *http.Request, c *call) error {
	d := sessionsData{Enabled: s.Sessions != nil}
	if s.Sessions != nil {
		list, err := s.Sessions.List(r.Context(), c.Principal, r.URL.Query().Get("all") != "1")
		if err != nil {
			return err
		}
		from, to, page, more := pageOf(r, len(list))
		d.Rows, d.Page, d.More = list[from:to], page, more
	}
	return s.render(w, r, c, http.StatusOK, "sessions", "Remote Bazel sessions", "sessions", d)
}

func (s *Server) stopSession(w http.ResponseWriter, r *http.Request, c *call) error {
	id := r.PathValue("id")
	if s.Sessions == nil || !ids.Valid("ses", id) {
		return notFound("session")
	}
	if _, err := s.Sessions.Stop(r.Context(), c.Principal, id); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/sessions", http.StatusSeeOther)
	return nil
}

type cacheRow struct {
	Org        store.Org
	Used       int64
	Soft, Hard int64
	// Fill is Used against the hard quota (else the soft one), 0-1.
	Fill float64
}

type cacheData struct {
	Enabled bool
	Rows    []cacheRow
}

func (s *Server) cachePage(w http.ResponseWriter, r *http.Request, c *call) error {
	d := cacheData{Enabled: s.Cache != nil}
	if s.Cache != nil {
		orgs := []string{c.Session.Org}
		// Owners (orgs.read) see every org of the installation.
		if c.Can("orgs.read") {
			all, err := s.Admin.ListOrgs(r.Context())
			if err != nil {
				return err
			}
			orgs = orgs[:0]
			for _, o := range all {
				orgs = append(orgs, o.ID)
			}
		}
		for _, id := range orgs {
			o, err := s.Store.Orgs().Get(r.Context(), id)
			if err != nil {
				return err
			}
			used, q := s.Cache.OrgUsage(id)
			row := cacheRow{Org: o, Used: used, Soft: q.Soft, Hard: q.Hard}
			if limit := max(q.Hard, q.Soft); limit > 0 {
				if q.Hard > 0 {
					limit = q.Hard
				}
				row.Fill = min(float64(used)/float64(limit), 1)
			}
			d.Rows = append(d.Rows, row)
		}
	}
	return s.render(w, r, c, http.StatusOK, "cache", "Cache", "cache", d)
}

type tokenRow struct {
	Token     store.APIToken
	Live      bool
	CanRevoke bool
}

type tokensData struct {
	Rows []tokenRow
	Page int
	More bool
	// Roles the session may mint (its own and weaker).
	Roles   []auth.Role
	Fresh   bool
	Created *admin.Token
	Window  string
}

var tokenTTLs = map[string]time.Duration{"1d": 24 * time.Hour, "7d": 7 * 24 * time.Hour, "30d": 30 * 24 * time.Hour,
	"90d": 90 * 24 * time.Hour, "365d": 365 * 24 * time.Hour, "never": 0}

func (s *Server) tokensData(r *http.Request, c *call) (tokensData, error) {
	list, err := s.Admin.ListTokens(r.Context(), c.Session.Org)
	if err != nil {
		return tokensData{}, err
	}
	slices.SortFunc(list, func(a, b store.APIToken) int { return b.CreatedAt.Compare(a.CreatedAt) })
	from, to, page, more := pageOf(r, len(list))
	now := s.Now()
	d := tokensData{Page: page, More: more, Fresh: s.Web.Fresh(c.Session), Window: shortDuration(s.Web.Config().StepUp)}
	for _, t := range list[from:to] {
		live := t.RevokedAt.IsZero() && (t.ExpiresAt.IsZero() || now.Before(t.ExpiresAt))
		d.Rows = append(d.Rows, tokenRow{Token: t, Live: live,
			CanRevoke: live && c.Can("tokens.revoke") && rank(auth.Role(t.Role)) <= rank(c.Principal.Role)})
	}
	for _, role := range auth.Roles {
		if rank(role) <= rank(c.Principal.Role) {
			d.Roles = append(d.Roles, role)
		}
	}
	return d, nil
}

func (s *Server) tokensPage(w http.ResponseWriter, r *http.Request, c *call) error {
	d, err := s.tokensData(r, c)
	if err != nil {
		return err
	}
	return s.render(w, r, c, http.StatusOK, "tokens", "API tokens", "tokens", d)
}

// createToken mints a token and shows its secret in this answer only (a
// POST answered with the page, never a redirect: the secret is in no URL
// and no history entry).
func (s *Server) createToken(w http.ResponseWriter, r *http.Request, c *call) error {
	name := strings.TrimSpace(r.PostFormValue("name"))
	role := r.PostFormValue("role")
	ttl, ok := tokenTTLs[r.PostFormValue("expires")]
	switch {
	case name == "" || len(name) > 100 || !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' }):
		return badRequest("name: 1-100 printable characters")
	case !auth.Role(role).Valid():
		return badRequest("role: %q is not one of viewer, developer, ci, admin, owner", role)
	case !ok:
		return badRequest("expires: one of 1d, 7d, 30d, 90d, 365d, never")
	}
	tok, err := s.Admin.CreateToken(r.Context(), c.Principal, name, role, ttl)
	if err != nil {
		return err
	}
	d, err := s.tokensData(r, c)
	if err != nil {
		return err
	}
	d.Created = &tok
	return s.render(w, r, c, http.StatusCreated, "tokens", "API tokens", "tokens", d)
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, c *call) error {
	id := r.PathValue("id")
	if !ids.Valid("tok", id) {
		return notFound("token")
	}
	if _, err := s.Admin.RevokeToken(r.Context(), c.Principal, id); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/tokens", http.StatusSeeOther)
	return nil
}

type orgsData struct {
	Current store.Org
	All     []store.Org
	Fresh   bool
}

func (s *Server) orgsPage(w http.ResponseWriter, r *http.Request, c *call) error {
	cur, err := s.Store.Orgs().Get(r.Context(), c.Session.Org)
	if err != nil {
		return err
	}
	d := orgsData{Current: cur, Fresh: s.Web.Fresh(c.Session)}
	if c.Can("orgs.read") {
		all, err := s.Admin.ListOrgs(r.Context())
		if err != nil {
			return err
		}
		if len(all) > 500 {
			all = all[:500]
		}
		d.All = all
	}
	return s.render(w, r, c, http.StatusOK, "orgs", "Orgs", "orgs", d)
}

// linkOrg links the session's current org to a GitHub account.
func (s *Server) linkOrg(w http.ResponseWriter, r *http.Request, c *call) error {
	id := r.PathValue("id")
	if id != c.Session.Org {
		return notFound("org")
	}
	login := strings.TrimSpace(r.PostFormValue("github_login"))
	ghID, err := strconv.ParseInt(strings.TrimSpace(r.PostFormValue("github_id")), 10, 64)
	if err != nil || ghID <= 0 || login == "" || len(login) > 100 {
		return badRequest("github_id and github_login: the GitHub account's numeric id and login")
	}
	if _, err := s.Admin.LinkGitHub(r.Context(), c.Principal, id, ghID, login); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/orgs", http.StatusSeeOther)
	return nil
}

type settingsData struct {
	Keys          []auth.KeyInfo
	Fresh         bool
	WebhookSecret string
	Accepted      int
	Rotated       string
}

func (s *Server) settingsData(c *call) settingsData {
	d := settingsData{Fresh: s.Web.Fresh(c.Session)}
	if s.Keyring != nil {
		d.Keys = s.Keyring.Keys()
	}
	return d
}

func (s *Server) settingsPage(w http.ResponseWriter, r *http.Request, c *call) error {
	return s.render(w, r, c, http.StatusOK, "settings", "Installation", "settings", s.settingsData(c))
}

func (s *Server) rotateKeys(w http.ResponseWriter, r *http.Request, c *call) error {
	id, err := s.Admin.RotateSigningKey(r.Context(), c.Principal)
	if err != nil {
		return err
	}
	d := s.settingsData(c)
	d.Rotated = id
	return s.render(w, r, c, http.StatusOK, "settings", "Installation", "settings", d)
}

// rotateWebhookSecret adds a webhook secret and shows it in this answer
// only.
func (s *Server) rotateWebhookSecret(w http.ResponseWriter, r *http.Request, c *call) error {
	secret, n, err := s.Admin.AddWebhookSecret(r.Context(), c.Principal)
	if err != nil {
		return err
	}
	d := s.settingsData(c)
	d.WebhookSecret, d.Accepted = secret, n
	return s.render(w, r, c, http.StatusCreated, "settings", "Installation", "settings", d)
}

type auditRow struct {
	Entry store.AuditEntry
	Who   string
}

type auditData struct {
	Rows []auditRow
	Next string
}

func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, c *call) error {
	f := store.AuditFilter{OrgID: c.Session.Org, Limit: 100, Installation: c.Principal.Role == auth.RoleOwner}
	if b := r.URL.Query().Get("before"); b != "" {
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n < 1 {
			return badRequest("before: an audit entry id")
		}
		f.BeforeID = n
	}
	list, err := s.Store.Audit().List(r.Context(), f)
	if err != nil {
		return err
	}
	// Name the actors: tokens by their names, people by their e-mail.
	tokens, err := s.Admin.ListTokens(r.Context(), c.Session.Org)
	if err != nil {
		return err
	}
	names := map[string]string{}
	for _, t := range tokens {
		names["user:"+t.ID] = "token " + t.Name
	}
	var users []string
	for _, e := range list {
		if id, ok := strings.CutPrefix(e.Actor, "user:usr_"); ok {
			users = append(users, "usr_"+id)
		}
	}
	people, err := s.Web.Names(r.Context(), users)
	if err != nil {
		return err
	}
	for id, n := range people {
		names["user:"+id] = n
	}
	d := auditData{}
	for _, e := range list {
		d.Rows = append(d.Rows, auditRow{Entry: e, Who: names[e.Actor]})
	}
	if len(list) == f.Limit {
		d.Next = strconv.FormatInt(list[len(list)-1].ID, 10)
	}
	return s.render(w, r, c, http.StatusOK, "audit", "Audit log", "audit", d)
}
