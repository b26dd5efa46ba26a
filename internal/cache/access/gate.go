// Package access decides who may use the build cache: it authenticates the
// bearer token a request carries and asks the policy whether the principal
// may read or write its org's cache. Every protocol front end of the cache
// goes through a Gate.
package access

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/nimbus-build/nimbus/internal/auth"
)

// Actions the cache asks the Authorizer about.
const (
	ActionRead  = "cache.read"
	ActionWrite = "cache.write"
)

// Authenticator turns a bearer token into a principal. Its errors wrap
// auth.ErrUnauthenticated.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (auth.Principal, error)
}

// Authorizer decides whether p may do action in org. Its errors wrap
// auth.ErrForbidden.
type Authorizer interface {
	Authorize(ctx context.Context, p auth.Principal, action string, org string) error
}

// Gate authenticates and authorizes cache requests.
type Gate struct {
	authn Authenticator
	authz Authorizer
}

// NewGate returns a Gate over authn and authz.
func NewGate(authn Authenticator, authz Authorizer) *Gate {
	return &Gate{authn: authn, authz: authz}
}

// Caller is an authenticated principal and what it may do in its org.
type Caller struct {
	Principal auth.Principal
	CanWrite  bool
}

// Org is the caller's org: the namespace of everything it reads and writes.
func (c Caller) Org() string { return c.Principal.Org }

// Check authenticates token and requires that the principal may at least
// read its org's cache. CanWrite tells whether it may also write.
func (g *Gate) Check(ctx context.Context, token string) (Caller, error) {
	if token == "" {
		return Caller{}, fmt.Errorf("no cache token: %w", auth.ErrUnauthenticated)
	}
	p, err := g.authn.Authenticate(ctx, token)
	if err != nil {
		return Caller{}, err
	}
	if p.Org == "" {
		return Caller{}, fmt.Errorf("principal without org: %w", auth.ErrUnauthenticated)
	}
	if err := g.authz.Authorize(ctx, p, ActionRead, p.Org); err != nil {
		return Caller{}, err
	}
	c := Caller{Principal: p}
	switch err := g.authz.Authorize(ctx, p, ActionWrite, p.Org); {
	case err == nil:
		c.CanWrite = true
	case errors.Is(err, auth.ErrForbidden):
	default:
		return Caller{}, err
	}
	return c, nil
}

// RequireWrite returns auth.ErrForbidden unless c may write.
func (c Caller) RequireWrite() error {
	if !c.CanWrite {
		return fmt.Errorf("%s may only read the cache of org %s: %w", c.Principal.Kind, c.Principal.Org, auth.ErrForbidden)
	}
	return nil
}

// BearerToken extracts the token from an Authorization header value:
// "Bearer <token>", or "Basic base64(user:token)" with the token as the
// password (Bazel's HTTP cache puts credentials in the URL).
func BearerToken(header string) string {
	scheme, rest, ok := strings.Cut(header, " ")
	if !ok {
		return ""
	}
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return rest
	case strings.EqualFold(scheme, "Basic"):
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return ""
		}
		_, pass, ok := strings.Cut(string(b), ":")
		if !ok {
			return ""
		}
		return pass
	}
	return ""
}

// RequestToken returns the token of an HTTP request.
func RequestToken(r *http.Request) string { return BearerToken(r.Header.Get("Authorization")) }
