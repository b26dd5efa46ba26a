// Package policy makes every authorization decision of the control plane
// with one OPA/Rego policy (authz.rego), deny by default. Callers ask
// Authorize(principal, action, resource); the policy answers.
package policy

import (
	"context"
	_ "embed"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/nimbus-build/nimbus/internal/auth"
)

//go:embed authz.rego
var authzRego string

// Resource is what an action acts on.
type Resource struct {
	// Org owns the resource; a caller only ever acts inside its own org.
	Org string
	// Role is the role of a token being created (tokens.create).
	Role string
}

// Engine evaluates the policy. It is safe for concurrent use.
type Engine struct {
	query rego.PreparedEvalQuery
}

// New compiles the embedded policy.
func New(ctx context.Context) (*Engine, error) {
	return compile(ctx, authzRego)
}

func compile(ctx context.Context, module string) (*Engine, error) {
	q, err := rego.New(
		rego.Query("data.nimbus.authz.allow"),
		rego.Module("authz.rego", module),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("compile policy: %w", err)
	}
	return &Engine{query: q}, nil
}

// Input is the document the policy sees.
func Input(p auth.Principal, action string, r Resource) map[string]any {
	scopes := make([]any, len(p.Scopes))
	for i, s := range p.Scopes {
		scopes[i] = s
	}
	return map[string]any{
		"subject": map[string]any{
			"kind":   string(p.Kind),
			"org":    p.Org,
			"role":   string(p.Role),
			"scopes": scopes,
		},
		"action":   action,
		"resource": map[string]any{"org": r.Org, "role": r.Role},
	}
}

// Allowed evaluates the policy for one request.
func (e *Engine) Allowed(ctx context.Context, input map[string]any) (bool, error) {
	rs, err := e.query.Eval(ctx, rego.EvalInput(input))
	if err != nil {
		return false, fmt.Errorf("evaluate policy: %w", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return false, nil
	}
	allow, ok := rs[0].Expressions[0].Value.(bool)
	return ok && allow, nil
}

// Authorize returns nil when p may perform action on r, and an error
// wrapping auth.ErrForbidden otherwise.
func (e *Engine) Authorize(ctx context.Context, p auth.Principal, action string, r Resource) error {
	ok, err := e.Allowed(ctx, Input(p, action, r))
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %s may not %s", auth.ErrForbidden, describe(p), action)
	}
	return nil
}

func describe(p auth.Principal) string {
	if p.Kind == auth.KindUser {
		if strings.ContainsRune("aeiou", rune(string(p.Role + " ")[0])) {
			return fmt.Sprintf("an %s token", p.Role)
		}
		return fmt.Sprintf("a %s token", p.Role)
	}
	return "this " + string(p.Kind)
}

// OrgAuthorizer is the Engine seen by callers that name a resource by its
// org alone (the build cache).
type OrgAuthorizer struct{ Engine *Engine }

// Authorize implements the cache's Authorizer.
func (a OrgAuthorizer) Authorize(ctx context.Context, p auth.Principal, action string, org string) error {
	return a.Engine.Authorize(ctx, p, action, Resource{Org: org})
}
