package sessionapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/httperror"
	"github.com/nimbus-build/nimbus/internal/pki"
	"github.com/nimbus-build/nimbus/internal/rbs"
)

const maxRequestBody = 1 << 20

// Handler serves the sessions API for b. The principal comes from the
// request's context (auth.WithPrincipal, set by the control plane's
// authentication middleware); requests without one get 401.
func Handler(b Broker, log *slog.Logger) http.Handler {
	h := &handler{b: b, log: log.With("component", "rbs-sessions")}
	mux := http.NewServeMux()
	mux.Handle("POST "+PathGetServer, h.wrap(h.getServer))
	mux.Handle("POST "+pathSessions+"{action}", h.wrap(h.sessionAction))
	return mux
}

type handler struct {
	b   Broker
	log *slog.Logger
}

// wrap answers in the Message shape ({"error": "…"}), which Client
// reads (as did proxies before it).
func (h *handler) wrap(f func(http.ResponseWriter, *http.Request, auth.Principal) error) http.Handler {
	return httperror.Wrap(h.log, httperror.Message, classify, func(w http.ResponseWriter, r *http.Request) error {
		p, ok := auth.FromContext(r.Context())
		if !ok {
			return fmt.Errorf("%w: no credentials", auth.ErrUnauthenticated)
		}
		return f(w, r, p)
	})
}

// classify maps the broker's errors to what the proxy sees.
func classify(err error) (httperror.Error, bool) {
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return httperror.Error{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "unauthenticated"}, true
	case errors.Is(err, auth.ErrForbidden):
		return httperror.Error{Status: http.StatusForbidden, Code: "forbidden", Message: err.Error()}, true
	case errors.Is(err, ErrNotFound):
		return httperror.Error{Status: http.StatusNotFound, Code: "not_found", Message: "session not found"}, true
	case errors.Is(err, rbs.ErrNoAgent):
		return httperror.Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: err.Error()}, true
	}
	return httperror.Error{}, false
}

func badRequest(msg string) error {
	return httperror.New(http.StatusBadRequest, "bad_request", "%s", msg)
}

func (h *handler) getServer(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	var req getServerRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return badRequest("bad request: " + err.Error())
	}
	if err := validateRequest(req.ServerRequest); err != nil {
		return badRequest(err.Error())
	}
	csr, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		return badRequest(err.Error())
	}
	g, err := h.b.GetServer(r.Context(), p, req.ServerRequest, csr)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(getServerResponse{
		SessionID:        g.SessionID,
		AgentAddress:     g.AgentAddress,
		AgentIdentity:    g.Agent.String(),
		CACertPEM:        string(g.CACertPEM),
		ClientCertPEM:    string(g.ClientCertPEM),
		Reused:           g.Reused,
		HeartbeatSeconds: int(g.HeartbeatInterval.Seconds()),
	})
}

func (h *handler) sessionAction(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	id, action, ok := strings.Cut(r.PathValue("action"), ":")
	if !ok || pki.ValidateName(id) != nil {
		return httperror.New(http.StatusNotFound, "not_found", "not found")
	}
	var err error
	switch action {
	case "heartbeat":
		err = h.b.Heartbeat(r.Context(), p, id)
	case "release":
		err = h.b.Release(r.Context(), p, id)
	default:
		return httperror.New(http.StatusNotFound, "not_found", "not found")
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// validateRequest checks what a proxy asks for.
func validateRequest(req rbs.ServerRequest) error {
	if err := rbs.ValidateRepoHash(req.RepoHash); err != nil {
		return err
	}
	for name, p := range map[string]string{"workspace": req.Workspace, "output_base": req.OutputBase, "output_user_root": req.OutputUserRoot} {
		if !strings.HasPrefix(p, "/") || len(p) > 1024 || strings.ContainsAny(p, "\x00\n") {
			return fmt.Errorf("%s: %q is not an absolute path", name, p)
		}
	}
	if req.InstallMD5 == "" || len(req.InstallMD5) > 128 {
		return errors.New("install_md5: missing or too long")
	}
	if len(req.StartupOptions) > 256 {
		return errors.New("startup_options: too many")
	}
	if _, err := rbs.PassThroughStartupOptions(req.StartupOptions); err != nil {
		return err
	}
	return nil
}
