// Package api serves Nimbus's HTTP API: the public API for people and CI
// systems, the agent API, GitHub's webhooks and the operational endpoints.
// Handlers authenticate the caller, ask the policy engine, and call the
// services; errors become JSON answers in one place (wrap).
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nimbus-build/nimbus/internal/admin"
	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/fleet"
	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/policy"
	"github.com/nimbus-build/nimbus/internal/rbs/session"
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
	// Gatherer serves /metrics.
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
	// JobEnv returns environment variables added to a leased job (the
	// cache endpoints and a job-scoped credential); nil adds none.
	JobEnv func(ctx context.Context, j store.Job) (map[string]string, error)
	// Sessions is remote Bazel's session broker, CA its certificate
	// authority; nil: remote Bazel is off.
	Sessions *sessions.Broker
	CA       *pki.CA
	// RBSRequireClientCert: remote Bazel calls must come with a user
	// certificate of the CA (mutual TLS).
	RBSRequireClientCert bool
	// Extra routes mounted on the same server (the cache's HTTP API).
	Mounts map[string]http.Handler
	Now    func() time.Time
}

// Server is the HTTP API.
type Server struct {
	Options
	log *slog.Logger
	mux *http.ServeMux
}

// New builds the Server and its routes.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{Options: o, log: o.Logger.With("component", "api"), mux: http.NewServeMux()}
	s.routes()
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) routes() {
	m := s.mux
	m.Handle("GET /healthz", s.wrap(s.healthz))
	m.Handle("GET /readyz", s.wrap(s.readyz))
	if s.Gatherer != nil {
		m.Handle("GET /metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))
	}
	m.Handle("POST /webhooks/github", s.wrap(s.githubWebhook))

	m.Handle("GET /api/v1/whoami", s.user("", s.whoami))
	m.Handle("POST /api/v1/jobs", s.user("jobs.create", s.submitJob))
	m.Handle("GET /api/v1/jobs", s.user("jobs.read", s.listJobs))
	m.Handle("GET /api/v1/jobs/{id}", s.user("jobs.read", s.getJob))
	m.Handle("POST /api/v1/jobs/{id}/cancel", s.user("jobs.cancel", s.cancelJob))
	m.Handle("GET /api/v1/jobs/{id}/logs", s.user("logs.read", s.jobLogs))

	m.Handle("POST /api/v1/agents/join-tokens", s.user("agents.create_join_token", s.createJoinToken))
	m.Handle("GET /api/v1/agents", s.user("agents.read", s.listAgents))
	m.Handle("POST /api/v1/agents/{id}/disable", s.user("agents.disable", s.disableAgent))
	m.Handle("POST /api/v1/tokens", s.user("", s.createToken)) // authorized per requested role
	m.Handle("GET /api/v1/tokens", s.user("tokens.read", s.listTokens))
	m.Handle("POST /api/v1/tokens/{id}/revoke", s.user("tokens.revoke", s.revokeToken))
	m.Handle("GET /api/v1/orgs", s.user("orgs.read", s.listOrgs))
	m.Handle("POST /api/v1/orgs", s.user("orgs.create", s.createOrg))
	m.Handle("POST /api/v1/orgs/{id}/github", s.user("orgs.create", s.linkOrg))
	m.Handle("GET /api/v1/audit", s.user("audit.read", s.listAudit))
	m.Handle("GET /api/v1/keys", s.user("keys.read", s.listKeys))
	m.Handle("POST /api/v1/keys/rotate", s.user("keys.rotate", s.rotateKeys))
	m.Handle("POST /api/v1/webhook-secrets/rotate", s.user("keys.rotate", s.rotateWebhookSecret))
	m.Handle("POST /api/v1/webhook-secrets/retire", s.user("keys.rotate", s.retireWebhookSecrets))

	m.Handle("POST /api/v1/agent/enroll", s.wrap(s.enroll))
	m.Handle("POST /api/v1/agent/refresh", s.agent("agent.refresh", s.refresh))
	m.Handle("POST /api/v1/agent/register", s.agent("agent.register", s.register))
	m.Handle("POST /api/v1/agent/lease", s.agent("agent.lease", s.lease))
	m.Handle("POST /api/v1/agent/sync", s.agent("agent.sync", s.sync))
	m.Handle("POST /api/v1/agent/jobs/{id}/start", s.agent("agent.report", s.startJob))
	m.Handle("POST /api/v1/agent/jobs/{id}/logs", s.agent("agent.report", s.appendLogs))
	m.Handle("POST /api/v1/agent/jobs/{id}/complete", s.agent("agent.report", s.completeJob))

	if s.Sessions != nil {
		m.Handle("/api/v1/rbs/", s.rbsAPI(session.Handler(s.Sessions, s.log)))
		m.Handle("POST /api/v1/rbs/certificate", s.user("sessions.use", s.userCertificate))
		m.Handle("GET /api/v1/sessions", s.user("sessions.read", s.listSessions))
		m.Handle("POST /api/v1/sessions/{id}/stop", s.user("sessions.read", s.stopSession))
		m.Handle("POST /api/v1/agent/rbs/register", s.agent("agent.sessions", s.registerRBS))
		m.Handle("POST /api/v1/agent/sessions", s.agent("agent.sessions", s.sessionOrders))
		m.Handle("POST /api/v1/agent/sessions/{id}/state", s.agent("agent.sessions", s.sessionReport))
	}
	for prefix, h := range s.Mounts {
		m.Handle(prefix, h)
	}
	m.Handle("/", s.wrap(func(w http.ResponseWriter, r *http.Request) error {
		return notFound("route " + r.Method + " " + r.URL.Path)
	}))
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
