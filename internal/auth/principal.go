// Package auth holds Nimbus's identities: API tokens, agent and job
// credentials signed by a rotating keyring, and the encryption of secrets at
// rest.
package auth

import (
	"context"
	"slices"
)

// Kind says what sort of caller a Principal is.
type Kind string

const (
	// KindUser is a person or a CI system holding an API token.
	KindUser Kind = "user"
	// KindAgent is an enrolled host agent holding a signed credential.
	KindAgent Kind = "agent"
	// KindJob is a running job holding a short-lived, job-scoped credential
	// (for the build cache, for example).
	KindJob Kind = "job"
)

// Role is what an API token may do inside its org. Agents and jobs have no
// role; their rights come from their Kind and Scopes.
type Role string

const (
	RoleViewer    Role = "viewer"    // read jobs, logs, agents; read the cache
	RoleDeveloper Role = "developer" // viewer + submit and cancel jobs, remote Bazel sessions
	RoleCI        Role = "ci"        // developer + write the build cache
	RoleAdmin     Role = "admin"     // everything inside the org: tokens, agents, audit
	RoleOwner     Role = "owner"     // admin + managing orgs on this installation
)

// Roles lists every role, weakest first.
var Roles = []Role{RoleViewer, RoleDeveloper, RoleCI, RoleAdmin, RoleOwner}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// Principal is an authenticated caller. Every request acts as exactly one
// Principal and is scoped to its Org.
type Principal struct {
	Kind Kind
	// Org is the id of the org the caller belongs to. Never empty.
	Org string
	// ID identifies the credential holder: a token id, an agent id or a job id.
	ID string
	// Name is a human-readable name: the token's name (the user), the agent's name.
	Name string
	// Role is set for KindUser only.
	Role Role
	// Scopes narrows what a job credential may do, e.g. "cache.read".
	Scopes []string
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the Principal stored by WithPrincipal.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
