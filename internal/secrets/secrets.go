// Package secrets keeps the control plane's named secrets (the webhook
// secrets, the GitHub App's private key) in the store, sealed with the
// master key, and caches them briefly so the webhook path does not open
// them on every delivery.
package secrets

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Names of the secrets.
const (
	WebhookSecrets = "webhook-secrets" // JSON list, newest first
	GitHubAppKey   = "github-app-key"  // PEM
	CacheURLKey    = "cache-url-key"   // signs the Actions cache's blob URLs
	// RegistryTokenKey signs the registry cache's short-lived tokens.
	RegistryTokenKey = "registry-token-key"
	DashboardKey     = "dashboard-key" // keys the dashboard's CSRF tokens and seals its sign-in cookie
)

// cacheTTL bounds how long another replica's rotation takes to be seen.
const cacheTTL = 5 * time.Second

// Store reads and writes sealed secrets.
type Store struct {
	st     store.Store
	sealer *auth.Sealer
	now    func() time.Time

	mu       sync.Mutex
	webhook  [][]byte
	loadedAt time.Time
}

// New returns a Store.
func New(st store.Store, sealer *auth.Sealer) *Store {
	return &Store{st: st, sealer: sealer, now: time.Now}
}

// Get opens a named secret. store.ErrNotFound when it was never set.
func (s *Store) Get(ctx context.Context, name string) ([]byte, error) {
	sec, err := s.st.Keys().GetSecret(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.sealer.Open(auth.SecretName(name), sec.Sealed)
}

// Put seals and stores a named secret.
func (s *Store) Put(ctx context.Context, name string, value []byte) error {
	err := s.st.Keys().PutSecret(ctx, store.Secret{Name: name, Sealed: s.sealer.Seal(auth.SecretName(name), value), UpdatedAt: s.now()})
	s.mu.Lock()
	s.loadedAt = time.Time{}
	s.mu.Unlock()
	return err
}

// Webhook returns the webhook secrets accepted now, newest first.
func (s *Store) Webhook(ctx context.Context) ([][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.now().Sub(s.loadedAt) < cacheTTL {
		return s.webhook, nil
	}
	list, err := s.webhookList(ctx)
	if err != nil {
		return nil, err
	}
	s.webhook = make([][]byte, len(list))
	for i, v := range list {
		s.webhook[i] = []byte(v)
	}
	s.loadedAt = s.now()
	return s.webhook, nil
}

func (s *Store) webhookList(ctx context.Context) ([]string, error) {
	b, err := s.Get(ctx, WebhookSecrets)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("webhook secrets: %w", err)
	}
	return list, nil
}

// NewWebhookSecret makes a random webhook secret.
func NewWebhookSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// AddWebhook adds a webhook secret in front of the others; both are
// accepted until RetireWebhook. It returns how many are accepted now.
func (s *Store) AddWebhook(ctx context.Context, secret string) (int, error) {
	if len(secret) < 16 {
		return 0, errors.New("webhook secret: at least 16 characters")
	}
	list, err := s.webhookList(ctx)
	if err != nil {
		return 0, err
	}
	list = append([]string{secret}, list...)
	b, _ := json.Marshal(list)
	return len(list), s.Put(ctx, WebhookSecrets, b)
}

// RetireWebhook keeps only the newest webhook secret.
func (s *Store) RetireWebhook(ctx context.Context) (int, error) {
	list, err := s.webhookList(ctx)
	if err != nil {
		return 0, err
	}
	if len(list) > 1 {
		list = list[:1]
	}
	b, _ := json.Marshal(list)
	return len(list), s.Put(ctx, WebhookSecrets, b)
}

// GetOrCreate returns a named random secret of n bytes, creating it on
// first use. Two replicas racing may both create one; the last write wins
// and both reread it, so they agree after the race.
func (s *Store) GetOrCreate(ctx context.Context, name string, n int) ([]byte, error) {
	v, err := s.Get(ctx, name)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	v = make([]byte, n)
	rand.Read(v)
	if err := s.Put(ctx, name, v); err != nil {
		return nil, err
	}
	return s.Get(ctx, name)
}
