// Package access decides who may use the build cache. The edge (an HTTP
// middleware and gRPC interceptors, built from one table of routes and
// the action each needs) authenticates the bearer token of every request
// once, asks the policy whether the principal may do the route's action in
// its own org, and puts the Caller in the request's context. Handlers take
// the Caller from there and never check access themselves.
package access

import (
	"context"
	"errors"
	"fmt"

	"github.com/nimbus-build/nimbus/internal/auth"
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

// Caller is the authenticated principal of a request.
type Caller struct {
	Principal auth.Principal
	gate      *Gate
}

// Org is the caller's org: the namespace of everything it reads and writes.
func (c Caller) Org() string { return c.Principal.Org }

// May reports whether the caller may also do a (for answers that describe
// what the caller may do, such as REAPI Capabilities; access itself is
// decided at the edge).
func (c Caller) May(ctx context.Context, a Action) bool {
	return c.gate != nil && c.gate.Authorize(ctx, c, a) == nil
}

// Authenticate turns a bearer token into a Caller.
func (g *Gate) Authenticate(ctx context.Context, token string) (Caller, error) {
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
	return Caller{Principal: p, gate: g}, nil
}

// Authorize returns nil when c may do a in its own org, and an error
// wrapping auth.ErrForbidden otherwise. Actions the policy does not decide
// are refused: they take no credential.
func (g *Gate) Authorize(ctx context.Context, c Caller, a Action) error {
	if !a.Decided() {
		return fmt.Errorf("%q is not an action of the policy: %w", a, auth.ErrForbidden)
	}
	err := g.authz.Authorize(ctx, c.Principal, string(a), c.Org())
	if err != nil && !errors.Is(err, auth.ErrForbidden) && !errors.Is(err, auth.ErrUnauthenticated) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%s may not %s in org %s: %w", describe(c.Principal), a, c.Org(), err)
	}
	return nil
}

// Admit authenticates token, authorizes a and returns ctx carrying the
// Caller. It is what the edge runs for every request of a decided action.
func (g *Gate) Admit(ctx context.Context, token string, a Action) (context.Context, error) {
	c, err := g.Authenticate(ctx, token)
	if err != nil {
		return ctx, err
	}
	if err := g.Authorize(ctx, c, a); err != nil {
		return ctx, err
	}
	return WithCaller(ctx, c), nil
}

func describe(p auth.Principal) string {
	if p.Kind == auth.KindUser {
		return "a " + string(p.Role) + " token"
	}
	return "a " + string(p.Kind) + " credential"
}

type callerKey struct{}

// WithCaller returns ctx carrying c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the Caller the edge admitted. A request that reached
// a handler without one (a route the table declares Public or Signed, or
// a wiring mistake) gets auth.ErrUnauthenticated: never a default caller.
func CallerFrom(ctx context.Context) (Caller, error) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	if !ok {
		return Caller{}, fmt.Errorf("no authenticated caller: %w", auth.ErrUnauthenticated)
	}
	return c, nil
}
