// Package api serves Nimbus's HTTP API: the public API for people and CI
// systems, the agent API, GitHub's webhooks and the operational endpoints.
// Handlers authenticate the caller, ask the policy engine, and call the
// services; errors become JSON answers in one place (wrap).
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nimbus-build/nimbus/internal/admin"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache/jobcred"
	"github.com/nimbus-build/nimbus/internal/egress"
	"github.com/nimbus-build/nimbus/internal/fleet"
	"github.com/nimbus-build/nimbus/internal/insights"
	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/policy"
	"github.com/nimbus-build/nimbus/internal/rbs/sessionapi"
	"github.com/nimbus-build/nimbus/internal/secrets"
	"github.com/nimbus-build/nimbus/internal/sessions"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Options are the Server's dependencies.
type Options struct {
	Store store.Store
	Jobs  *jobs.Service
	Logs  *logs.Service
	// Fleet manages agents, Admin orgs, tokens, keys and webhook secrets.
	Fleet   *fleet.Service
	Admin   *admin.Service
	Auth    *auth.Authenticator
	Keyring *auth.Keyring
	Policy  *policy.Engine
	Secrets *secrets.Store
	// Gatherer serves /metrics; Registry takes the API's own metrics.
	Gatherer prometheus.Gatherer
	Registry prometheus.Registerer
	// Metrics says who may read /metrics on the API's listener.
	Metrics MetricsAccess
	// Limits bound what unauthenticated clients can hold (zero: none).
	Limits EdgeLimits
	Logger *slog.Logger
	// JobAccess returns what a leased job is given besides its spec (the
	// cache endpoints and a job-scoped credential); nil gives nothing.
	JobAccess func(ctx context.Context, j store.Job) (JobAccess, error)
	// Egress decides leased jobs' network policies and keeps their
	// reports; nil: leases carry no policy (agents apply their default).
	Egress *egress.Service
	// Sessions is remote Bazel's session broker, CA its certificate
	// authority; nil: remote Bazel is off.
	Sessions *sessions.Broker
	CA       *pki.CA
	// RBSRequireClientCert: remote Bazel calls must come with a user
	// certificate of the CA (mutual TLS).
	RBSRequireClientCert bool
	// CacheTrust holds what each org trusts to write its build cache.
	CacheTrust *jobcred.Settings
	// Extra routes mounted on the same server (the cache's HTTP API).
	Mounts map[string]http.Handler
	Now    func() time.Time
}

// JobAccess is what a leased job is given besides its spec.
type JobAccess struct {
	// Env is added to the job's environment.
	Env map[string]string
	// Cache is the job's access to the caches, for an agent that forwards
	// them into the sandbox.
	Cache *apiv1.CacheAccess
}

// Server is the HTTP API.
type Server struct {
	Options
	log     *slog.Logger
	mux     *http.ServeMux
	budget  *bodyBudget // nil: open bodies are not budgeted
	edgeMet *edgeMetrics
	// insights reports over the jobs and their logs.
	insights *insights.Service
}

// New builds the Server and its routes.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{Options: o, log: o.Logger.With("component", "api"), mux: http.NewServeMux(), edgeMet: newEdgeMetrics(o.Registry)}
	if l := o.Limits; l.OpenBodyBytes > 0 || l.OpenBodyBytesPerClient > 0 {
		s.budget = newBodyBudget(l.OpenBodyBytes, l.OpenBodyBytesPerClient, func(n int64) { s.edgeMet.openBytes.Set(float64(n)) })
	}
	var lines insights.Lines
	if o.Logs != nil {
		lines = o.Logs
	}
	s.insights = insights.New(o.Jobs, lines, o.Now, o.Logger)
	s.routes()
	return s
}

// ServeHTTP implements http.Handler. Every request body is read under
// the minimum rate of EdgeLimits.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.guardBody(w, r)
	s.mux.ServeHTTP(w, r)
}

func (s *Server) guardBody(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil && r.Body != http.NoBody && (s.Limits.MinBodyRate > 0 || s.Limits.OpenBodyTimeout > 0) {
		r.Body = newGuardedBody(w, r, s.Limits, func() { s.edgeMet.shed.WithLabelValues(shedSlowBody).Inc() })
	}
}

// GuardBodies returns h with its request bodies read under the minimum
// rate of EdgeLimits, as the API's own are: for a handler served beside
// the API on its listener without its mux (the registry cache, which
// parses its paths itself).
func (s *Server) GuardBodies(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.guardBody(w, r)
		h.ServeHTTP(w, r)
	})
}

// LimitListener bounds the open connections of one client address on ln
// (EdgeLimits.MaxConnsPerClient; 0: ln as it is). plain says that ln's
// connections speak HTTP directly (no TLS on top of it), so that a
// connection refused can be told why.
func (s *Server) LimitListener(ln net.Listener, plain bool) net.Listener {
	if s.Limits.MaxConnsPerClient <= 0 {
		return ln
	}
	return &connLimiter{Listener: ln, max: s.Limits.MaxConnsPerClient, plain: plain, metrics: s.edgeMet, open: map[string]int{}}
}

// handlers binds each route of apiv1.Routes (by pattern) to its handler:
// a handler for open routes, a userHandler for API tokens, an
// agentHandler for agents, or an http.Handler for the remote Bazel
// sessions API (internal/rbs/sessionapi).
func (s *Server) handlers() map[string]any {
	h := map[string]any{
		apiv1.RouteHealthz.Pattern():       handler(s.healthz),
		apiv1.RouteReadyz.Pattern():        handler(s.readyz),
		apiv1.RouteMetrics.Pattern():       handler(s.metrics),
		apiv1.RouteGitHubWebhook.Pattern(): handler(s.githubWebhook),

		apiv1.RouteWhoami.Pattern():        userHandler(s.whoami),
		apiv1.RouteSubmitJob.Pattern():     userHandler(s.submitJob),
		apiv1.RouteListJobs.Pattern():      userHandler(s.listJobs),
		apiv1.RouteGetJob.Pattern():        userHandler(s.getJob),
		apiv1.RouteCancelJob.Pattern():     userHandler(s.cancelJob),
		apiv1.RouteJobLogs.Pattern():       userHandler(s.jobLogs),
		apiv1.RouteSearchLogs.Pattern():    userHandler(s.searchLogs),
		apiv1.RouteInsights.Pattern():      userHandler(s.getInsights),
		apiv1.RouteEgressSuggest.Pattern(): userHandler(s.suggestEgress),

		apiv1.RouteCreateJoinToken.Pattern():      userHandler(s.createJoinToken),
		apiv1.RouteListAgents.Pattern():           userHandler(s.listAgents),
		apiv1.RouteDisableAgent.Pattern():         userHandler(s.disableAgent),
		apiv1.RouteCreateToken.Pattern():          userHandler(s.createToken),
		apiv1.RouteListTokens.Pattern():           userHandler(s.listTokens),
		apiv1.RouteRevokeToken.Pattern():          userHandler(s.revokeToken),
		apiv1.RouteListOrgs.Pattern():             userHandler(s.listOrgs),
		apiv1.RouteCreateOrg.Pattern():            userHandler(s.createOrg),
		apiv1.RouteLinkOrg.Pattern():              userHandler(s.linkOrg),
		apiv1.RouteListAudit.Pattern():            userHandler(s.listAudit),
		apiv1.RouteListKeys.Pattern():             userHandler(s.listKeys),
		apiv1.RouteRotateKeys.Pattern():           userHandler(s.rotateKeys),
		apiv1.RouteRotateWebhookSecret.Pattern():  userHandler(s.rotateWebhookSecret),
		apiv1.RouteRetireWebhookSecrets.Pattern(): userHandler(s.retireWebhookSecrets),
		apiv1.RouteGetCacheTrust.Pattern():        userHandler(s.getCacheTrust),
		apiv1.RouteSetCacheTrust.Pattern():        userHandler(s.setCacheTrust),

		apiv1.RouteAgentEnroll.Pattern():      handler(s.enroll),
		apiv1.RouteAgentRefresh.Pattern():     agentHandler(s.refresh),
		apiv1.RouteAgentRegister.Pattern():    agentHandler(s.register),
		apiv1.RouteAgentLease.Pattern():       agentHandler(s.lease),
		apiv1.RouteAgentSync.Pattern():        agentHandler(s.sync),
		apiv1.RouteAgentStartJob.Pattern():    agentHandler(s.startJob),
		apiv1.RouteAgentJobLogs.Pattern():     agentHandler(s.appendLogs),
		apiv1.RouteAgentCompleteJob.Pattern(): agentHandler(s.completeJob),
	}
	// Remote Bazel's routes answer 404 when it is off.
	rbs := map[string]any{
		apiv1.RouteRBSCertificate.Pattern():   userHandler(s.userCertificate),
		apiv1.RouteListSessions.Pattern():     userHandler(s.listSessions),
		apiv1.RouteStopSession.Pattern():      userHandler(s.stopSession),
		apiv1.RouteAgentRBSRegister.Pattern(): agentHandler(s.registerRBS),
		apiv1.RouteAgentSessions.Pattern():    agentHandler(s.sessionOrders),
		apiv1.RouteAgentSession.Pattern():     agentHandler(s.sessionReport),
	}
	var proxyAPI http.Handler = http.NotFoundHandler()
	if s.Sessions != nil {
		proxyAPI = sessionapi.Handler(s.Sessions, s.log)
	}
	rbs[apiv1.RouteRBSGetServer.Pattern()] = proxyAPI
	rbs[apiv1.RouteRBSSession.Pattern()] = proxyAPI
	off := func(w http.ResponseWriter, r *http.Request) error {
		return notFound("remote Bazel (off on this server): route " + r.Method + " " + r.URL.Path)
	}
	for p, f := range rbs {
		if s.Sessions != nil {
			h[p] = f
			continue
		}
		switch f.(type) {
		case userHandler:
			h[p] = userHandler(func(w http.ResponseWriter, r *http.Request, _ auth.Principal) error { return off(w, r) })
		case agentHandler:
			h[p] = agentHandler(func(w http.ResponseWriter, r *http.Request, _ store.Agent) error { return off(w, r) })
		default:
			h[p] = s.wrap(off)
		}
	}
	return h
}

// routes registers every route of apiv1.Routes, behind the edge check its
// entry declares, and the mounts. A route without a handler, or a handler
// without a route, is a programming error found at start.
func (s *Server) routes() {
	hs := s.handlers()
	for _, rt := range apiv1.Routes {
		h, ok := hs[rt.Pattern()]
		if !ok {
			panic("api: no handler for route " + rt.Pattern())
		}
		delete(hs, rt.Pattern())
		s.mux.Handle(rt.Pattern(), s.edge(rt, h))
	}
	for p := range hs {
		panic("api: handler for " + p + " is not in apiv1.Routes")
	}
	for prefix, h := range s.Mounts {
		s.mux.Handle(prefix, h)
	}
	s.mux.Handle("/", s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		return notFound("route " + r.Method + " " + r.URL.Path)
	}))
}

// edge authenticates and authorizes a request as rt declares, once, before
// h runs.
func (s *Server) edge(rt apiv1.Route, h any) http.Handler {
	switch h := h.(type) {
	case handler:
		if rt.Auth == apiv1.AuthNone || rt.Auth == apiv1.AuthJoin {
			return s.open(rt, s.wrap(h))
		}
	case userHandler:
		if rt.Auth == apiv1.AuthUser && !rt.ClientCert {
			return s.user(rt.Action, h)
		}
	case agentHandler:
		if rt.Auth == apiv1.AuthAgent {
			return s.agent(rt.Action, h)
		}
	case http.Handler:
		if rt.Auth == apiv1.AuthUser && rt.ClientCert {
			return s.rbsAPI(rt.Action, h)
		}
	}
	panic(fmt.Sprintf("api: route %s (auth %s) has a handler of type %T", rt.Pattern(), rt.Auth, h))
}

// bearer extracts the credential of an Authorization header.
func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", errorf(http.StatusUnauthorized, "unauthenticated", "missing Authorization header: send \"Authorization: Bearer <token>\"")
	}
	scheme, cred, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || cred == "" {
		return "", errorf(http.StatusUnauthorized, "unauthenticated", "Authorization header must be \"Bearer <token>\"")
	}
	return strings.TrimSpace(cred), nil
}

func (s *Server) authenticate(r *http.Request) (auth.Principal, error) {
	tok, err := bearer(r)
	if err != nil {
		return auth.Principal{}, err
	}
	return s.Auth.Authenticate(r.Context(), tok)
}

// userHandler is a handler for a caller holding an API token.
type userHandler func(w http.ResponseWriter, r *http.Request, p auth.Principal) error

// user authenticates an API token and, when action is set, checks that the
// policy allows it inside the caller's org. Handlers then only ever touch
// records of p.Org.
func (s *Server) user(action string, h userHandler) http.Handler {
	return s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		p, err := s.authenticate(r)
		if err != nil {
			return err
		}
		if p.Kind != auth.KindUser {
			return errorf(http.StatusForbidden, "forbidden", "this endpoint takes an API token, not a %s credential", p.Kind)
		}
		if action != "" {
			if err := s.Policy.Authorize(r.Context(), p, action, policy.Resource{Org: p.Org}); err != nil {
				return err
			}
		}
		return h(w, r, p)
	})
}

// agentHandler is a handler for an enrolled agent.
type agentHandler func(w http.ResponseWriter, r *http.Request, a store.Agent) error

func (s *Server) agent(action string, h agentHandler) http.Handler {
	return s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		tok, err := bearer(r)
		if err != nil {
			return err
		}
		p, a, err := s.Auth.Agent(r.Context(), tok)
		if err != nil {
			if errors.Is(err, auth.ErrUnauthenticated) {
				// Some other valid credential: the wrong kind for this endpoint.
				if q, qerr := s.Auth.Authenticate(r.Context(), tok); qerr == nil && q.Kind != auth.KindAgent {
					return errorf(http.StatusForbidden, "forbidden", "this endpoint takes an agent credential")
				}
			}
			return err
		}
		if err := s.Policy.Authorize(r.Context(), p, action, policy.Resource{Org: a.OrgID}); err != nil {
			return err
		}
		return h(w, r, a)
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.Store.Ping(ctx); err != nil {
		s.log.Warn("not ready", "err", err)
		return errorf(http.StatusServiceUnavailable, "unavailable", "database unavailable")
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

func actor(p auth.Principal) string { return audit.Actor(p) }
