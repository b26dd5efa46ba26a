package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nimbus-build/nimbus/internal/auth"
)

// jobTokenTTL bounds the registry tokens of job credentials.
const jobTokenTTL = time.Minute

// tokenResponse is the Docker token protocol's answer (token and
// access_token carry the same value: older clients read the first, OAuth2
// clients the second).
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// token serves the token endpoint of the Docker registry token protocol:
// GET with the Nimbus credential as the Basic password (docker login,
// skopeo, containerd) or as a Bearer token, and POST with an OAuth2
// password grant (containerd's form). The answer is a short-lived registry
// token granting, for each requested repository scope, what the caller
// may do there now: pull where its policy and org allow, push only to its
// org's own repositories and only with registry.write. A scope it may
// not have is left out (the registry then refuses), as the protocol asks.
func (r *Registry) token(w http.ResponseWriter, req *http.Request, _ *call) error {
	ctx := req.Context()
	var scopes []string
	if req.Method == http.MethodPost {
		req.Body = http.MaxBytesReader(w, req.Body, 64<<10)
		if err := req.ParseForm(); err != nil {
			return fmt.Errorf("%w: token request form: %v", errBadScope, err)
		}
		switch gt := req.PostForm.Get("grant_type"); gt {
		case "password":
			if pw := req.PostForm.Get("password"); pw != "" && req.Header.Get("Authorization") == "" {
				req.SetBasicAuth(req.PostForm.Get("username"), pw)
			}
		default:
			return ociError(http.StatusBadRequest, codeUnsupported, "grant_type %q: only password is supported", clip(gt))
		}
		scopes = req.PostForm["scope"]
	} else {
		scopes = req.URL.Query()["scope"]
	}
	c, err := r.authenticate(ctx, req)
	if err == nil && c.claims != nil {
		err = fmt.Errorf("%w: present a Nimbus token, not a registry token", auth.ErrUnauthenticated)
	}
	if err == nil {
		err = r.mayUse(ctx, c)
	}
	if errors.Is(err, auth.ErrForbidden) {
		// The credential is valid but may not use the registry: a
		// login must fail, so this is a 401 here.
		err = fmt.Errorf("%w: %v", auth.ErrUnauthenticated, err)
	}
	if err != nil {
		return err
	}
	want, err := ParseScopes(scopes)
	if err != nil {
		return err
	}
	claims := TokenClaims{Org: c.org, Kind: c.principal.Kind, Subject: c.principal.ID, Role: c.principal.Role}
	for _, s := range want {
		if g := r.grant(req, c, s); len(g.Actions) > 0 {
			claims.Access = append(claims.Access, g)
		}
	}
	// A job's credential dies with its lease; the registry tokens it got
	// live a minute past that at most.
	ttl := r.o.TokenTTL
	if c.principal.Kind == auth.KindJob {
		ttl = min(ttl, jobTokenTTL)
	}
	tok, _, err := r.signer.Sign(claims, ttl)
	if err != nil {
		return err
	}
	now := r.o.Now()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(tokenResponse{
		Token: tok, AccessToken: tok, ExpiresIn: int(ttl / time.Second), IssuedAt: now.UTC().Format(time.RFC3339),
	})
}

// grant is what the caller gets of a requested scope.
func (r *Registry) grant(req *http.Request, c caller, s Scope) Scope {
	ctx := req.Context()
	p, err := r.resolve(ctx, c.org, s.Name)
	if err != nil {
		return Scope{Name: s.Name}
	}
	g := Scope{Name: s.Name}
	for _, a := range s.Actions {
		switch a {
		case actionPull:
			if r.policy(ctx, c, ActionRead) == nil {
				g.Actions = append(g.Actions, a)
			}
		case actionPush:
			if p.Up == nil && r.policy(ctx, c, ActionWrite) == nil {
				g.Actions = append(g.Actions, a)
			}
		}
	}
	return g
}
