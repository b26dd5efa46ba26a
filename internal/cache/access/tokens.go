package access

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/nimbus-build/nimbus/internal/auth"
)

// Tokens is a small working Authenticator and Authorizer over a table of
// tokens, with the cache rules of the control plane's policy: every
// principal of an org may read its cache; users with role ci, admin or owner
// and jobs with scope cache.write may write it. Tests and the benchmark's
// in-process server use it; production wires the real token service and
// policy engine.
type Tokens struct {
	mu sync.RWMutex
	m  map[string]auth.Principal
}

var (
	_ Authenticator = (*Tokens)(nil)
	_ Authorizer    = (*Tokens)(nil)
)

// NewTokens returns an empty table.
func NewTokens() *Tokens { return &Tokens{m: map[string]auth.Principal{}} }

// Add makes token stand for p.
func (t *Tokens) Add(token string, p auth.Principal) {
	t.mu.Lock()
	t.m[token] = p
	t.mu.Unlock()
}

// Authenticate implements Authenticator.
func (t *Tokens) Authenticate(ctx context.Context, token string) (auth.Principal, error) {
	t.mu.RLock()
	p, ok := t.m[token]
	t.mu.RUnlock()
	if !ok {
		return auth.Principal{}, fmt.Errorf("unknown token: %w", auth.ErrUnauthenticated)
	}
	return p, nil
}

// Authorize implements Authorizer.
func (t *Tokens) Authorize(ctx context.Context, p auth.Principal, action, org string) error {
	if p.Org != org {
		return fmt.Errorf("org %s may not use the cache of org %s: %w", p.Org, org, auth.ErrForbidden)
	}
	switch action {
	case ActionRead:
		if p.Kind == auth.KindJob && !slices.Contains(p.Scopes, ActionRead) && !slices.Contains(p.Scopes, ActionWrite) {
			return fmt.Errorf("job credential without cache scope: %w", auth.ErrForbidden)
		}
		return nil
	case ActionWrite:
		switch {
		case p.Kind == auth.KindUser && (p.Role == auth.RoleCI || p.Role == auth.RoleAdmin || p.Role == auth.RoleOwner):
			return nil
		case p.Kind == auth.KindJob && slices.Contains(p.Scopes, ActionWrite):
			return nil
		}
		return fmt.Errorf("%s %s may not write the cache: %w", p.Kind, p.Role, auth.ErrForbidden)
	}
	return fmt.Errorf("unknown action %q: %w", action, auth.ErrForbidden)
}
