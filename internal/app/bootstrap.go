package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/secrets"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Bootstrap is what a first start created.
type Bootstrap struct {
	Org            store.Org
	AdminToken     string
	AdminTokenFile string
	WebhookSecret  string
	WebhookFile    string
}

// bootstrap creates, on the very first start, the default org, an owner
// token (saved 0600 at <data-dir>/admin.token) and a webhook secret (sealed
// in the database, and at <data-dir>/webhook.secret to paste into GitHub).
// It returns nil when the installation already exists.
func bootstrap(ctx context.Context, st store.Store, sec *secrets.Store, dataDir string) (*Bootstrap, error) {
	orgs, err := st.Orgs().List(ctx)
	if err != nil {
		return nil, err
	}
	if len(orgs) > 0 {
		return nil, nil
	}
	now := time.Now()
	b := &Bootstrap{
		Org:            store.Org{ID: ids.New("org"), Name: "default", CreatedAt: now},
		AdminTokenFile: filepath.Join(dataDir, "admin.token"),
		WebhookFile:    filepath.Join(dataDir, "webhook.secret"),
		WebhookSecret:  secrets.NewWebhookSecret(),
	}
	secret, hash := auth.NewSecret(auth.APITokenPrefix)
	b.AdminToken = secret
	// The files first: a crash after the commit must not lose the token.
	if err := os.WriteFile(b.AdminTokenFile, []byte(secret+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := os.WriteFile(b.WebhookFile, []byte(b.WebhookSecret+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	err = audit.New(st, nil, nil).Do(ctx, func(r *audit.Tx) error {
		if err := r.Orgs().Create(ctx, b.Org); err != nil {
			return err
		}
		tok := store.APIToken{ID: ids.New("tok"), OrgID: b.Org.ID, Name: "admin", Role: string(auth.RoleOwner), Hash: hash,
			CreatedBy: "system:bootstrap", CreatedAt: now}
		if err := r.Tokens().CreateAPIToken(ctx, tok); err != nil {
			return err
		}
		r.Audit(store.AuditEntry{At: now, OrgID: b.Org.ID, Actor: "system:bootstrap", Action: "org.created",
			Target: b.Org.ID, Detail: map[string]string{"name": b.Org.Name, "owner_token": tok.ID}})
		return nil
	})
	if errors.Is(err, store.ErrConflict) {
		// Another replica bootstrapped the same database first.
		os.Remove(b.AdminTokenFile)
		os.Remove(b.WebhookFile)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if _, err := sec.AddWebhook(ctx, b.WebhookSecret); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}
