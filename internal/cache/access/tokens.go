package access

import (
	"context"
	"fmt"
	"sync"

	"github.com/nimbus-build/nimbus/internal/auth"
)

// Tokens is a small working Authenticator over a table of tokens. Tests
// and the benchmark's in-process server use it with the real policy
// engine; production wires the real token service.
type Tokens struct {
	mu sync.RWMutex
	m  map[string]auth.Principal
}

var _ Authenticator = (*Tokens)(nil)

// NewTokens returns an empty table.
func NewTokens() *Tokens { return &Tokens{m: map[string]auth.Principal{}} }

// Add makes token stand for p.
func (t *Tokens) Add(token string, p auth.Principal) {
	t.mu.Lock()
	t.m[token] = p
	t.mu.Unlock()
}

// Remove forgets token (a revocation).
func (t *Tokens) Remove(token string) {
	t.mu.Lock()
	delete(t.m, token)
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
