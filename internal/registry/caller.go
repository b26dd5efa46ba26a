package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/cache/access"
)

// caller is an authenticated request's principal and what it may do:
// with a registry token, the access the token endpoint granted; with a
// Nimbus credential presented directly, what the policy decides now.
type caller struct {
	org       string
	principal auth.Principal
	// claims is set for a registry token.
	claims *TokenClaims
}

// authenticate returns the caller of a request.
func (r *Registry) authenticate(ctx context.Context, req *http.Request) (caller, error) {
	tok := access.RequestToken(req) // Bearer, or Basic with the token as the password (docker login)
	if tok == "" {
		return caller{}, fmt.Errorf("%w: no credential: log in with a Nimbus token (docker login)", auth.ErrUnauthenticated)
	}
	if strings.HasPrefix(tok, TokenPrefix) {
		c, err := r.signer.Verify(tok)
		if err != nil {
			return caller{}, err
		}
		p := auth.Principal{Kind: c.Kind, Org: c.Org, ID: c.Subject, Role: c.Role}
		return caller{org: c.Org, principal: p, claims: &c}, nil
	}
	p, err := r.o.Authn.Authenticate(ctx, tok)
	if err != nil {
		return caller{}, err
	}
	if p.Org == "" {
		return caller{}, fmt.Errorf("%w: principal without org", auth.ErrUnauthenticated)
	}
	return caller{org: p.Org, principal: p}, nil
}

// mayUse reports whether the caller may use the registry at all (pull
// something in its org): what /v2/ and the token endpoint require.
func (r *Registry) mayUse(ctx context.Context, c caller) error {
	if c.claims != nil {
		return nil // issued only to callers that may
	}
	return r.policy(ctx, c, ActionRead)
}

func (r *Registry) policy(ctx context.Context, c caller, action string) error {
	err := r.o.Authz.Authorize(ctx, c.principal, action, c.org)
	if err != nil && !errors.Is(err, auth.ErrForbidden) {
		return err
	}
	return err
}

// errNeedToken: a registry token that grants nothing on the repository;
// the client should fetch one for it (401 with the scope in the
// challenge), unlike a token that grants other actions on it (403).
var errNeedToken = fmt.Errorf("%w: the registry token does not cover this repository", auth.ErrUnauthenticated)

// allow decides whether the caller may do action (pull or push) on the
// repository it names.
func (r *Registry) allow(ctx context.Context, c caller, name, action string) error {
	if c.claims != nil {
		if c.claims.Allows(name, action) {
			return nil
		}
		if !c.claims.Covers(name) {
			return errNeedToken
		}
		return fmt.Errorf("%w: requested access to %s (%s) is denied", auth.ErrForbidden, name, action)
	}
	pa := ActionRead
	if action == actionPush {
		pa = ActionWrite
	}
	if err := r.policy(ctx, c, pa); err != nil {
		return fmt.Errorf("requested access to %s (%s) is denied: %w", name, action, err)
	}
	return nil
}

// realm is the token endpoint's URL as the client reached the registry:
// a job reaches it at its platform address, a developer at the public
// one, and each must be sent back to the same host.
func realm(req *http.Request) string {
	scheme := "http"
	if req.TLS != nil {
		scheme = "https"
	}
	if p := req.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	host := req.Host
	if host == "" || strings.ContainsAny(host, "\" \\/") {
		host = "localhost"
	}
	return scheme + "://" + host + PathPrefix + "token"
}

// tokenService is the service name of the challenge and the token.
const tokenService = "nimbus"

// challenge sets the WWW-Authenticate header of a 401: where to get a
// token, and for which scope.
func challenge(w http.ResponseWriter, req *http.Request, scope string) {
	v := fmt.Sprintf(`Bearer realm=%q,service=%q`, realm(req), tokenService)
	if scope != "" {
		v += fmt.Sprintf(`,scope=%q`, scope)
	}
	w.Header().Set("WWW-Authenticate", v)
}
