// Package dashboard serves Nimbus's web dashboard from the control
// plane's own listener: server-rendered pages (html/template) over the
// same services and the same policy decisions as the API, embedded
// assets (no CDN, works offline), live updates by Server-Sent Events from
// the control plane's notify machinery, and sign-in through OpenID
// Connect or GitHub (internal/sso) into server-side sessions
// (internal/websession).
//
// Every route is declared in Routes; the edge (route) authenticates the
// session, checks the CSRF token of every POST, asks the policy for the
// route's action in the session's current org and, for the actions that
// need it, a recent authentication (step-up), before a handler runs.
// Handlers read and change state only through the services.
package dashboard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-build/nimbus/internal/admin"
	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache"
	"github.com/nimbus-build/nimbus/internal/egress"
	"github.com/nimbus-build/nimbus/internal/fleet"
	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/policy"
	"github.com/nimbus-build/nimbus/internal/sessions"
	"github.com/nimbus-build/nimbus/internal/sso"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/websession"
)

// CacheUsage is what the cache page reads: an org's bytes and quota.
type CacheUsage interface {
	OrgUsage(org string) (used int64, quota cache.Quota)
}

// Options are the Server's dependencies.
type Options struct {
	Store store.Store
	Jobs  *jobs.Service
	// Logs is where the job page's log comes from (*logs.Service).
	Logs    LogSource
	Fleet   *fleet.Service
	Admin   *admin.Service
	Keyring *auth.Keyring
	Policy  *policy.Engine
	// Sessions is remote Bazel's broker (nil: off); Egress keeps jobs'
	// egress reports (nil: none); Cache is the build cache (nil: none).
	Sessions *sessions.Broker
	Egress   *egress.Service
	Cache    CacheUsage
	// Web keeps the sessions; Providers are the ways to sign in; Rules
	// map who signed in to roles in orgs.
	Web       *websession.Manager
	Providers []sso.Provider
	Rules     []sso.Rule
	// PublicURL is how browsers reach the server: the providers send
	// them back to PublicURL + "/auth/callback".
	PublicURL string
	// Wait returns a channel closed at the next notification of a topic
	// (the jobs service's notifier): the live pages wait on it.
	Wait   func(topic string) <-chan struct{}
	Logger *slog.Logger
	Now    func() time.Time
}

// Server is the dashboard. It is an http.Handler for the paths of
// MountPatterns.
type Server struct {
	Options
	log   *slog.Logger
	mux   *http.ServeMux
	pages *pages
	audit *audit.Log
	hub   *hub
	cop   *http.CrossOriginProtection

	canMu sync.Mutex
	can   map[auth.Role]map[string]bool

	publicURL atomic.Value // string
}

// MountPatterns are the paths the dashboard answers under, for the
// server's mux.
var MountPatterns = []string{"/{$}", "/login", "/login/", "/auth/callback", "/logout", "/ui/"}

// New builds the Server and registers its routes.
func New(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Web == nil || o.Policy == nil || o.Jobs == nil || o.Store == nil {
		return nil, errors.New("dashboard: a store, the jobs service, the policy and a session manager are needed")
	}
	pg, err := parsePages()
	if err != nil {
		return nil, err
	}
	s := &Server{Options: o, log: o.Logger.With("component", "dashboard"), mux: http.NewServeMux(), pages: pg,
		audit: audit.New(o.Store, o.Now, o.Logger), can: map[auth.Role]map[string]bool{}, cop: http.NewCrossOriginProtection()}
	s.hub = newHub(s)
	s.publicURL.Store(o.PublicURL)
	hs := s.handlers()
	for _, rt := range Routes {
		h, ok := hs[rt.Pattern()]
		if !ok {
			return nil, fmt.Errorf("dashboard: no handler for route %s", rt.Pattern())
		}
		delete(hs, rt.Pattern())
		s.mux.Handle(rt.Pattern(), s.edge(rt, h))
	}
	for p := range hs {
		return nil, fmt.Errorf("dashboard: handler for %s is not in Routes", p)
	}
	s.mux.Handle("/", s.page(func(w http.ResponseWriter, r *http.Request) error {
		return notFound("page")
	}))
	return s, nil
}

// handler is a dashboard handler for a signed-in request.
type handler func(w http.ResponseWriter, r *http.Request, c *call) error

// openHandler is a handler for an open route.
type openHandler func(w http.ResponseWriter, r *http.Request) error

func (s *Server) handlers() map[string]any {
	return map[string]any{
		RouteRoot.Pattern():        openHandler(s.root),
		RouteLogin.Pattern():       openHandler(s.loginPage),
		RouteLoginWith.Pattern():   openHandler(s.loginWith),
		RouteCallback.Pattern():    openHandler(s.callback),
		RouteAssets.Pattern():      openHandler(s.asset),
		RouteLogout.Pattern():      handler(s.logout),
		RouteStepUp.Pattern():      handler(s.stepUp),
		RouteHome.Pattern():        handler(s.home),
		RouteSwitchOrg.Pattern():   handler(s.switchOrg),
		RouteJobs.Pattern():        handler(s.jobsPage),
		RouteJobsLive.Pattern():    handler(s.jobsLive),
		RouteJob.Pattern():         handler(s.jobPage),
		RouteJobLive.Pattern():     handler(s.jobLive),
		RouteJobLog.Pattern():      handler(s.jobLog),
		RouteJobLogRaw.Pattern():   handler(s.jobLogRaw),
		RouteSearch.Pattern():      handler(s.searchPage),
		RouteCancelJob.Pattern():   handler(s.cancelJob),
		RouteAgents.Pattern():      handler(s.agentsPage),
		RouteDisable.Pattern():     handler(s.disableAgent),
		RouteSessions.Pattern():    handler(s.sessionsPage),
		RouteStopSession.Pattern(): handler(s.stopSession),
		RouteCache.Pattern():       handler(s.cachePage),
		RouteTokens.Pattern():      handler(s.tokensPage),
		RouteNewToken.Pattern():    handler(s.createToken),
		RouteRevokeToken.Pattern(): handler(s.revokeToken),
		RouteOrgs.Pattern():        handler(s.orgsPage),
		RouteLinkOrg.Pattern():     handler(s.linkOrg),
		RouteSettings.Pattern():    handler(s.settingsPage),
		RouteRotateKeys.Pattern():  handler(s.rotateKeys),
		RouteRotateHook.Pattern():  handler(s.rotateWebhookSecret),
		RouteAudit.Pattern():       handler(s.auditPage),
		RouteInsights.Pattern():    handler(s.insightsPage),
	}
}

// SetPublicURL changes how browsers reach the server (once the
// listener's port is known).
func (s *Server) SetPublicURL(u string) { s.publicURL.Store(u) }

// ServeHTTP implements http.Handler: every answer carries the security
// headers.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header(), s.Web.Config().Secure)
	s.mux.ServeHTTP(w, r)
}

// securityHeaders: a strict Content Security Policy (scripts and styles
// from this origin only, no inline script, no framing, forms post here
// only) and the usual hardening headers.
func securityHeaders(h http.Header, tls bool) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
	if tls {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

// call is a signed-in request: the session, what it acts as, and what
// its role may do.
type call struct {
	Session   websession.Session
	Principal auth.Principal
	CSRF      string
	can       map[string]bool
	route     Route
	// StepUpWindow is how recent a sign-in the step-up actions need.
	StepUpWindow string
}

// Can reports whether the policy allows the session's role action in its
// org: pages offer only what it allows.
func (c *call) Can(action string) bool { return c.can[action] }

// principal is what a session acts as in its current org: a user of
// that org, with its role there, audited as "user:<user id>".
func principal(sess websession.Session) auth.Principal {
	return auth.Principal{Kind: auth.KindUser, Org: sess.Org, ID: sess.UserID, Name: sess.Email, Role: sess.Role(sess.Org)}
}

// decisions returns what role may do in its own org, for every action a
// route asks for, from the policy (memoized per role: the decision
// depends on nothing else for these actions).
func (s *Server) decisions(ctx context.Context, role auth.Role) map[string]bool {
	s.canMu.Lock()
	defer s.canMu.Unlock()
	if m, ok := s.can[role]; ok {
		return m
	}
	m := map[string]bool{}
	p := auth.Principal{Kind: auth.KindUser, Org: "o", Role: role}
	for _, rt := range Routes {
		if rt.Action != "" {
			m[rt.Action] = s.Policy.Authorize(ctx, p, rt.Action, policy.Resource{Org: "o"}) == nil
		}
	}
	for _, a := range []string{"orgs.read", "tokens.create", "sessions.stop", "agents.create_join_token"} {
		m[a] = s.Policy.Authorize(ctx, p, a, policy.Resource{Org: "o"}) == nil
	}
	s.can[role] = m
	return m
}

// Headers the edge sets on refusals, for scripts and tests.
const (
	headerStepUp = "Nimbus-Step-Up"
	headerReason = "Nimbus-Refusal"
)

// edge authenticates and authorizes a request as rt declares, once,
// before h runs.
func (s *Server) edge(rt Route, h any) http.Handler {
	switch h := h.(type) {
	case openHandler:
		if rt.Access == Open {
			return s.page(h)
		}
	case handler:
		if rt.Access == Signed && rt.Action != "" {
			return s.signed(rt, h)
		}
	}
	panic(fmt.Sprintf("dashboard: route %s (access %s, action %q) has a handler of type %T", rt.Pattern(), rt.Access, rt.Action, h))
}

func (s *Server) signed(rt Route, h handler) http.Handler {
	return s.page(func(w http.ResponseWriter, r *http.Request) error {
		sess, err := s.Web.Load(r.Context(), r)
		if errors.Is(err, websession.ErrNoSession) || errors.Is(err, websession.ErrExpired) {
			if errors.Is(err, websession.ErrExpired) {
				s.Web.ClearCookie(w)
			}
			w.Header().Set(headerReason, "signed-out")
			if r.Method == "GET" && !rt.Stream {
				q := url.Values{"return": {r.URL.RequestURI()}}
				if errors.Is(err, websession.ErrExpired) {
					q.Set("expired", "1")
				}
				http.Redirect(w, r, "/login?"+q.Encode(), http.StatusSeeOther)
				return nil
			}
			return &pageError{status: http.StatusUnauthorized, title: "Signed out", msg: "Your session ended: sign in again."}
		}
		if err != nil {
			return err
		}
		role := sess.Role(sess.Org)
		c := &call{Session: sess, Principal: principal(sess), CSRF: s.Web.CSRFToken(sess), route: rt, can: s.decisions(r.Context(), role),
			StepUpWindow: shortDuration(s.Web.Config().StepUp)}
		if r.Method == "POST" {
			// Browsers say where a request comes from (Sec-Fetch-Site,
			// Origin): a cross-site POST is refused before its token is
			// even looked at.
			if err := s.cop.Check(r); err != nil {
				w.Header().Set(headerReason, "csrf")
				return &pageError{status: http.StatusForbidden, title: "Refused", msg: "Cross-site request refused."}
			}
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			tok := r.Header.Get("X-CSRF-Token")
			if tok == "" {
				tok = r.PostFormValue("csrf")
			}
			if !s.Web.ValidCSRF(sess, tok) {
				w.Header().Set(headerReason, "csrf")
				return &pageError{status: http.StatusForbidden, title: "Refused", msg: "This form is stale or came from another site (CSRF token missing or wrong): reload the page and try again."}
			}
		}
		if role == "" {
			// The org the session acts in is no longer one of its orgs.
			return &pageError{status: http.StatusForbidden, title: "Forbidden", msg: "You have no role in this org."}
		}
		if err := s.Policy.Authorize(r.Context(), c.Principal, rt.Action, policy.Resource{Org: sess.Org}); err != nil {
			w.Header().Set(headerReason, "policy")
			return err
		}
		if rt.StepUp && !s.Web.Fresh(sess) {
			w.Header().Set(headerStepUp, "required")
			return s.askStepUp(w, r, c)
		}
		return h(w, r, c)
	})
}

// root sends a browser to its jobs page, or to sign in.
func (s *Server) root(w http.ResponseWriter, r *http.Request) error {
	http.Redirect(w, r, "/ui/jobs", http.StatusSeeOther)
	return nil
}

func (s *Server) home(w http.ResponseWriter, r *http.Request, c *call) error {
	http.Redirect(w, r, "/ui/jobs", http.StatusSeeOther)
	return nil
}

// safeReturn keeps a return path on the dashboard: a path of this
// server, never another host (open redirects).
func safeReturn(p string) string {
	if p == "" || !strings.HasPrefix(p, "/ui/") || strings.HasPrefix(p, "//") || strings.ContainsAny(p, "\\\r\n") {
		return "/ui/jobs"
	}
	u, err := url.Parse(p)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return "/ui/jobs"
	}
	return p
}
