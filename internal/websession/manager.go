// Package websession keeps the dashboard's sign-ins: server-side
// sessions behind a cookie that holds only a random secret (its hash is
// stored), idle and absolute expiry, revocation at sign-out, a CSRF
// token per session, the re-authentication time that step-up checks, and
// the sealed, short-lived cookie that carries a sign-in in flight from
// the provider's redirect back to the callback.
package websession

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Errors of Load. Both mean "sign in again"; they differ in what the
// page says.
var (
	// ErrNoSession: no cookie, or one that names no session.
	ErrNoSession = errors.New("not signed in")
	// ErrExpired: the session expired (idle or absolute) or was revoked.
	ErrExpired = errors.New("session expired")
)

// Config bounds sessions.
type Config struct {
	// Idle ends a session not used for this long.
	Idle time.Duration
	// Absolute ends a session this long after sign-in, however used.
	Absolute time.Duration
	// StepUp is how recent a sign-in must be for the actions that ask for
	// one (creating tokens, rotating keys...).
	StepUp time.Duration
	// Secure marks cookies Secure and names them with the __Host- prefix
	// (the server is reached over HTTPS).
	Secure bool
}

// DefaultConfig is what the server runs with unless told otherwise.
func DefaultConfig() Config {
	return Config{Idle: time.Hour, Absolute: 12 * time.Hour, StepUp: 5 * time.Minute}
}

// Validate checks the bounds.
func (c Config) Validate() error {
	switch {
	case c.Idle < time.Minute:
		return fmt.Errorf("session idle timeout %v: at least 1m", c.Idle)
	case c.Absolute < c.Idle:
		return fmt.Errorf("session lifetime %v: at least the idle timeout %v", c.Absolute, c.Idle)
	case c.StepUp < 30*time.Second || c.StepUp > time.Hour:
		return fmt.Errorf("step-up window %v: 30s to 1h", c.StepUp)
	}
	return nil
}

// touchEvery is how often a session's last use is written: idle expiry is
// that precise.
const touchEvery = time.Minute

// Manager issues, reads and ends sessions. It is safe for concurrent use.
type Manager struct {
	store   Store
	cfg     Config
	now     func() time.Time
	csrfKey []byte
	sealKey []byte
}

// New returns a Manager over st. key (32 random bytes kept by the
// installation, the same on every replica) keys the CSRF tokens and seals
// the sign-in cookie.
func New(st Store, cfg Config, key []byte, now func() time.Time) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(key) < 32 {
		return nil, errors.New("websession: the key must have at least 32 bytes")
	}
	if now == nil {
		now = time.Now
	}
	return &Manager{store: st, cfg: cfg, now: now, csrfKey: derive(key, "csrf"), sealKey: derive(key, "sign-in state")}, nil
}

func derive(key []byte, purpose string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("nimbus websession " + purpose))
	return m.Sum(nil)
}

// Config returns the bounds in force.
func (m *Manager) Config() Config { return m.cfg }

// CookieName is the session cookie's name.
func (m *Manager) CookieName() string {
	if m.cfg.Secure {
		return "__Host-nimbus_session"
	}
	return "nimbus_session"
}

// Identity is who a session is for.
type Identity struct {
	Provider string
	Subject  string
	Email    string
	Name     string
}

// UserID is the stable id of a person at a provider: the principal id
// their actions are audited under ("user:usr_…").
func UserID(provider, subject string) string {
	h := sha256.Sum256([]byte(provider + "\x00" + subject))
	return "usr_" + hex.EncodeToString(h[:12])
}

// Start creates a session for who, holding roles and acting in org, that
// authenticated at authAt, and sets its cookie on w.
func (m *Manager) Start(ctx context.Context, w http.ResponseWriter, who Identity, roles []OrgRole, org string, authAt time.Time) (Session, error) {
	var raw [32]byte
	rand.Read(raw[:])
	secret := base64.RawURLEncoding.EncodeToString(raw[:])
	now := m.now()
	if authAt.IsZero() || authAt.After(now) {
		authAt = now
	}
	s := Session{
		ID: ids.New("wss"), Hash: hashSecret(secret), UserID: UserID(who.Provider, who.Subject),
		Provider: who.Provider, Subject: who.Subject, Email: who.Email, Name: who.Name,
		Roles: roles, Org: org, AuthAt: authAt, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(m.cfg.Absolute),
	}
	if err := m.store.Create(ctx, s); err != nil {
		return Session{}, fmt.Errorf("start session: %w", err)
	}
	http.SetCookie(w, &http.Cookie{
		Name: m.CookieName(), Value: secret, Path: "/", HttpOnly: true, Secure: m.cfg.Secure,
		SameSite: http.SameSiteLaxMode, Expires: s.ExpiresAt,
	})
	return s, nil
}

func hashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// Load returns the live session the request's cookie names: ErrNoSession
// without one, ErrExpired when it has expired or was revoked.
func (m *Manager) Load(ctx context.Context, r *http.Request) (Session, error) {
	c, err := r.Cookie(m.CookieName())
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return Session{}, ErrNoSession
	}
	s, err := m.store.ByHash(ctx, hashSecret(c.Value))
	if errors.Is(err, store.ErrNotFound) {
		return Session{}, ErrNoSession
	}
	if err != nil {
		return Session{}, err
	}
	now := m.now()
	switch {
	case !s.RevokedAt.IsZero(), !now.Before(s.ExpiresAt), now.Sub(s.LastSeenAt) >= m.cfg.Idle:
		return Session{}, ErrExpired
	}
	if now.Sub(s.LastSeenAt) >= touchEvery {
		if err := m.store.Touch(ctx, s.ID, now); err != nil {
			return Session{}, err
		}
		s.LastSeenAt = now
	}
	return s, nil
}

// End revokes s and clears its cookie (sign-out).
func (m *Manager) End(ctx context.Context, w http.ResponseWriter, s Session) error {
	m.ClearCookie(w)
	if err := m.store.Revoke(ctx, s.ID, m.now()); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// ClearCookie removes the session cookie from the browser.
func (m *Manager) ClearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: m.CookieName(), Value: "", Path: "/", HttpOnly: true, Secure: m.cfg.Secure,
		SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

// CSRFToken is the token s's pages put in their forms and requests.
func (m *Manager) CSRFToken(s Session) string {
	h := hmac.New(sha256.New, m.csrfKey)
	h.Write([]byte(s.ID))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// ValidCSRF reports whether tok is s's CSRF token.
func (m *Manager) ValidCSRF(s Session, tok string) bool {
	want := m.CSRFToken(s)
	return len(tok) == len(want) && subtle.ConstantTimeCompare([]byte(tok), []byte(want)) == 1
}

// Fresh reports whether s authenticated within the step-up window.
func (m *Manager) Fresh(s Session) bool {
	return m.now().Sub(s.AuthAt) <= m.cfg.StepUp
}

// SteppedUp records that s's person authenticated again at at.
func (m *Manager) SteppedUp(ctx context.Context, s Session, at time.Time) error {
	return m.store.SetAuth(ctx, s.ID, at)
}

// SetOrg makes org (one of s's) the org s acts in.
func (m *Manager) SetOrg(ctx context.Context, s Session, org string) error {
	if s.Role(org) == "" {
		return fmt.Errorf("org %s: %w", org, store.ErrNotFound)
	}
	return m.store.SetOrg(ctx, s.ID, org)
}

// Prune deletes sessions that ended more than a day ago.
func (m *Manager) Prune(ctx context.Context) (int, error) {
	return m.store.Prune(ctx, m.now().Add(-24*time.Hour))
}

// Names returns who each user id is (e-mail or name), for audit listings.
func (m *Manager) Names(ctx context.Context, userIDs []string) (map[string]string, error) {
	return m.store.Names(ctx, userIDs)
}
