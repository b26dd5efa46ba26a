package jobcred

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Settings reads and changes what orgs trust to write their build cache
// (store.CacheTrust); each change commits with its audit entry.
type Settings struct {
	store store.Store
	audit *audit.Log
	now   func() time.Time
}

// NewSettings builds Settings over st.
func NewSettings(st store.Store, log *slog.Logger) *Settings {
	return &Settings{store: st, audit: audit.New(st, nil, log), now: time.Now}
}

// Get returns org's settings, the defaults when it never set them.
func (s *Settings) Get(ctx context.Context, org string) (store.CacheTrust, error) {
	t, err := s.store.Orgs().CacheTrust(ctx, org)
	if errors.Is(err, store.ErrNotFound) {
		return store.CacheTrust{OrgID: org, UntrustedRefs: []string{}, ACWriteRefs: DefaultACWriteRefs}, nil
	}
	return t, err
}

// Set replaces the settings of p's org. Check the patterns with
// ValidatePatterns first.
func (s *Settings) Set(ctx context.Context, p auth.Principal, untrusted, acWrite []string) (store.CacheTrust, error) {
	t := store.CacheTrust{OrgID: p.Org, UntrustedRefs: untrusted, ACWriteRefs: acWrite,
		UpdatedBy: string(p.Kind) + ":" + p.ID, UpdatedAt: s.now().UTC().Truncate(time.Microsecond)}
	if t.UntrustedRefs == nil {
		t.UntrustedRefs = []string{}
	}
	if t.ACWriteRefs == nil {
		t.ACWriteRefs = []string{}
	}
	err := s.audit.Do(ctx, func(tx *audit.Tx) error {
		if err := tx.Orgs().SetCacheTrust(ctx, t); err != nil {
			return err
		}
		tx.Audit(store.AuditEntry{OrgID: p.Org, Actor: t.UpdatedBy, Action: "cache.trust_changed", Target: p.Org,
			Detail: map[string]string{"untrusted_refs": strings.Join(t.UntrustedRefs, ","), "ac_write_refs": strings.Join(t.ACWriteRefs, ",")}})
		return nil
	})
	return t, err
}

// Bounds on the settings.
const (
	maxPatterns   = 64
	maxPatternLen = 256
)

// ValidatePatterns checks a list of ref patterns: each a full ref
// ("refs/heads/main") or a prefix ending in "*" ("refs/heads/rel/*", "*"),
// printable, without spaces, with "*" only at the end. field names the
// list in the error.
func ValidatePatterns(field string, ps []string) error {
	if len(ps) > maxPatterns {
		return fmt.Errorf("%s: %d patterns, at most %d", field, len(ps), maxPatterns)
	}
	for i, p := range ps {
		body, _ := strings.CutSuffix(p, "*")
		switch {
		case p == "" || len(p) > maxPatternLen:
			return fmt.Errorf("%s[%d]: 1 to %d characters", field, i, maxPatternLen)
		case strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			return fmt.Errorf("%s[%d]: %q has spaces or control characters", field, i, p)
		case strings.Contains(body, "*"):
			return fmt.Errorf("%s[%d]: %q: '*' may only end a pattern", field, i, p)
		case p != "*" && !strings.HasPrefix(p, "refs/"):
			return fmt.Errorf("%s[%d]: %q: a pattern is a ref (refs/heads/main) or a prefix ending in '*'", field, i, p)
		}
	}
	return nil
}
