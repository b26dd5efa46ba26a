package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/httperror"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/policy"
	"github.com/nimbus-build/nimbus/internal/rbs"
	"github.com/nimbus-build/nimbus/internal/sessions"
	"github.com/nimbus-build/nimbus/internal/store"
)

// rbsAPI authenticates a user for the remote Bazel sessions API (served by
// internal/rbs/sessionapi) and passes the principal on in the context. A
// client certificate, when the connection carries one (mutual TLS), must
// name the token's user; with RBSRequireClientCert it must be there.
//
// These routes answer in the Message shape ({"error": "…"}) from the edge
// on, the shape the proxy's client reads.
func (s *Server) rbsAPI(action string, h http.Handler) http.Handler {
	return httperror.Wrap(s.log, httperror.Message, classify, func(w http.ResponseWriter, r *http.Request) error {
		p, err := s.authenticate(r)
		if err != nil {
			return err
		}
		if err := s.checkClientCert(r, p); err != nil {
			return err
		}
		if err := s.Policy.Authorize(r.Context(), p, action, policy.Resource{Org: p.Org}); err != nil {
			return err
		}
		h.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
		return nil
	})
}

func (s *Server) checkClientCert(r *http.Request, p auth.Principal) error {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		if s.RBSRequireClientCert {
			return errorf(http.StatusForbidden, apiv1.CodeForbidden,
				"remote Bazel on this server needs your user certificate (mutual TLS): run `nimbus rbs init` again")
		}
		return nil
	}
	// The TLS layer verified the chain against the CA; the identity must
	// be the token's user.
	id, err := pki.IdentityFromCert(r.TLS.PeerCertificates[0])
	if err != nil {
		return errorf(http.StatusForbidden, apiv1.CodeForbidden, "client certificate: %v", err)
	}
	if want := sessions.UserOf(p); id != want {
		return errorf(http.StatusForbidden, apiv1.CodeForbidden, "client certificate names %s, the token %s", id, want)
	}
	return nil
}

// userCertificate issues the caller a user certificate of the CA for a
// CSR, which a remote Bazel proxy presents to the control plane (mutual
// TLS). The tunnel to an agent uses a shorter-lived one from GetServer.
func (s *Server) userCertificate(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var req apiv1.RBSCertificate
	if err := decode(w, r, maxBody, &req); err != nil {
		return err
	}
	csr, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		return badRequest("csr: %v", err)
	}
	cert, id, err := s.Sessions.UserCertificate(r.Context(), p, csr)
	if err != nil {
		return sessionsError(err)
	}
	writeJSON(w, http.StatusOK, apiv1.RBSRegistered{CertPEM: string(cert), CAPEM: string(s.CA.CertPEM()), Identity: id.String()})
	return nil
}

func sessionJSON(x store.Session) apiv1.Session {
	out := apiv1.Session{ID: x.ID, User: x.User, RepoHash: x.RepoHash, InstallMD5: x.InstallMD5, AgentID: x.AgentID,
		State: string(x.State), Address: x.Address, Reason: x.Reason, CreatedAt: x.CreatedAt, LastUsedAt: x.LastUsedAt, StoppedAt: x.StoppedAt}
	if req, err := decodeRequest(x.Request); err == nil {
		out.Workspace = req.Workspace
	}
	return out
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	list, err := s.Sessions.List(r.Context(), p, r.URL.Query().Get("all") != "1")
	if err != nil {
		return err
	}
	out := make([]apiv1.Session, len(list))
	for i, x := range list {
		out[i] = sessionJSON(x)
	}
	writeJSON(w, http.StatusOK, apiv1.SessionList{Sessions: out})
	return nil
}

func (s *Server) stopSession(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	id, err := pathID(r, "ses", "session")
	if err != nil {
		return err
	}
	x, err := s.Sessions.Stop(r.Context(), p, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sessionJSON(x))
	return nil
}

func (s *Server) registerRBS(w http.ResponseWriter, r *http.Request, a store.Agent) error {
	var req apiv1.RBSRegister
	if err := decode(w, r, maxBody, &req); err != nil {
		return err
	}
	csr, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		return badRequest("csr: %v", err)
	}
	cert, id, err := s.Sessions.RegisterAgent(r.Context(), a, store.AgentRBS{Address: req.Address, InstallMD5s: req.InstallMD5s,
		Versions: req.Versions, MaxSessions: req.MaxSessions}, csr)
	if err != nil {
		return sessionsError(err)
	}
	writeJSON(w, http.StatusOK, apiv1.RBSRegistered{CertPEM: string(cert), CAPEM: string(s.CA.CertPEM()), Identity: id.String()})
	return nil
}

func (s *Server) sessionOrders(w http.ResponseWriter, r *http.Request, a store.Agent) error {
	var req apiv1.SessionsSync
	if err := decode(w, r, maxBody, &req); err != nil {
		return err
	}
	wait := time.Duration(req.WaitSeconds) * time.Second
	if wait < 0 || wait > maxLeaseWait || len(req.Sessions) > maxAgentJobs {
		return badRequest("wait_seconds: 0-%d; sessions: at most %d", int(maxLeaseWait/time.Second), maxAgentJobs)
	}
	if a.RBS == nil {
		return errorf(http.StatusConflict, apiv1.CodeConflict, "this agent has not offered remote Bazel: register first")
	}
	orders, err := s.Sessions.Orders(r.Context(), a, req.Sessions, wait)
	if err != nil {
		return err
	}
	if s.Egress != nil {
		for i := range orders.Start {
			p := s.Egress.Session(r.Context(), a.OrgID, orders.Start[i].ID, "agent:"+a.ID)
			orders.Start[i].Egress = &p
		}
	}
	writeJSON(w, http.StatusOK, orders)
	return nil
}

func (s *Server) sessionReport(w http.ResponseWriter, r *http.Request, a store.Agent) error {
	id, err := pathID(r, "ses", "session")
	if err != nil {
		return err
	}
	var req apiv1.SessionReport
	if err := decode(w, r, maxBody, &req); err != nil {
		return err
	}
	x, err := s.Sessions.Report(r.Context(), a, id, req)
	if err != nil {
		return sessionsError(err)
	}
	writeJSON(w, http.StatusOK, sessionJSON(x))
	return nil
}

func sessionsError(err error) error {
	if errors.Is(err, sessions.ErrInvalid) {
		return badRequest("%v", err)
	}
	if errors.Is(err, rbs.ErrNoAgent) {
		return errorf(http.StatusServiceUnavailable, apiv1.CodeUnavailable, "%v", err)
	}
	return err
}
