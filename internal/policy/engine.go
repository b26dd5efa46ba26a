// Package policy makes every authorization decision of the control plane
// with one OPA/Rego policy (authz.rego), deny by default. Callers ask
// Authorize(principal, action, resource); the policy answers.
package policy

import (
	"context"
	_ "embed"
	"fmt"
	"slices"
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
//
// The build cache's actions (HotActions) are asked about on every cache
// request: for them the Engine answers from a decision table derived from
// the policy when it is compiled (every kind, role, same or other org, and
// whether the credential's scopes name the action), instead of evaluating
// Rego per request. TestFastPathAgrees checks that the table and full
// evaluation agree on every golden fixture and on random inputs.
type Engine struct {
	query rego.PreparedEvalQuery
	table map[decisionKey]bool
}

// HotActions are decided from the Engine's decision table.
var HotActions = []string{"cache.read", "cache.write", "cache.write_ac"}

// decisionKey is everything the policy reads of a request for a hot
// action whose resource names only an org.
type decisionKey struct {
	kind    auth.Kind
	role    auth.Role
	action  string
	sameOrg bool // the subject's org is set and is the resource's
	scoped  bool // the subject's scopes name the action
}

var tableKinds = []auth.Kind{auth.KindUser, auth.KindAgent, auth.KindJob}

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
	e := &Engine{query: q}
	if err := e.derive(ctx); err != nil {
		return nil, fmt.Errorf("compile policy: %w", err)
	}
	return e, nil
}

// derive fills the decision table by evaluating the policy once for every
// key.
func (e *Engine) derive(ctx context.Context) error {
	e.table = map[decisionKey]bool{}
	roles := append([]auth.Role{""}, auth.Roles...)
	for _, kind := range tableKinds {
		for _, role := range roles {
			for _, action := range HotActions {
				for _, sameOrg := range []bool{true, false} {
					for _, scoped := range []bool{true, false} {
						k := decisionKey{kind: kind, role: role, action: action, sameOrg: sameOrg, scoped: scoped}
						ok, err := e.Allowed(ctx, Input(k.principal(), action, k.resource()))
						if err != nil {
							return err
						}
						e.table[k] = ok
					}
				}
			}
		}
	}
	return nil
}

// principal and resource are a request the key stands for.
func (k decisionKey) principal() auth.Principal {
	p := auth.Principal{Kind: k.kind, Org: "o", Role: k.role}
	if k.scoped {
		p.Scopes = []string{k.action}
	}
	return p
}

func (k decisionKey) resource() Resource {
	if k.sameOrg {
		return Resource{Org: "o"}
	}
	return Resource{Org: "other"}
}

// fast decides from the table; ok is false when the request is not one
// the table covers (an action that is not hot, a resource naming a role,
// an unknown kind or role).
func (e *Engine) fast(p auth.Principal, action string, r Resource) (allow, ok bool) {
	if r.Role != "" || !slices.Contains(HotActions, action) || (p.Role != "" && !p.Role.Valid()) || !slices.Contains(tableKinds, p.Kind) {
		return false, false
	}
	k := decisionKey{kind: p.Kind, role: p.Role, action: action,
		sameOrg: p.Org != "" && p.Org == r.Org, scoped: slices.Contains(p.Scopes, action)}
	allow, ok = e.table[k]
	return allow, ok
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
	ok, fast := e.fast(p, action, r)
	if !fast {
		var err error
		if ok, err = e.Allowed(ctx, Input(p, action, r)); err != nil {
			return err
		}
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
