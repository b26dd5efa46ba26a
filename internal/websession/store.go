package websession

import (
	"context"
	"time"

	"github.com/nimbus-build/nimbus/internal/auth"
)

// OrgRole is a role a person holds in one org.
type OrgRole struct {
	Org  string    `json:"org"`
	Role auth.Role `json:"role"`
}

// Session is one signed-in browser. Its cookie holds a random secret;
// the store keeps only the secret's hash.
type Session struct {
	// ID names the session in listings and audit entries; it is not the
	// secret and does not authenticate anything.
	ID   string
	Hash []byte
	// UserID is stable for one person at one provider (UserID); Provider
	// and Subject are where they signed in.
	UserID   string
	Provider string
	Subject  string
	Email    string
	Name     string
	// Roles are the orgs the person may act in, decided at sign-in by
	// the role mapping rules; Org is the one the browser acts in now
	// (one of Roles).
	Roles []OrgRole
	Org   string
	// AuthAt is when the person last proved who they are at the provider
	// (the sign-in, or a later step-up).
	AuthAt     time.Time
	CreatedAt  time.Time
	LastSeenAt time.Time
	// ExpiresAt is the absolute end of the session, whatever its use.
	ExpiresAt time.Time
	RevokedAt time.Time // zero: live
}

// Role returns the session's role in org ("" when it has none).
func (s Session) Role(org string) auth.Role {
	for _, r := range s.Roles {
		if r.Org == org {
			return r.Role
		}
	}
	return ""
}

// Store keeps sessions. Implementation: internal/store/sqlstore (SQLite
// and PostgreSQL); conformance: internal/websession/websessiontest.
type Store interface {
	// Create stores a new session; store.ErrConflict when its id or hash
	// exists.
	Create(ctx context.Context, s Session) error
	// ByHash returns the session whose secret has this hash, whatever its
	// state (the caller checks expiry and revocation); store.ErrNotFound
	// when there is none.
	ByHash(ctx context.Context, hash []byte) (Session, error)
	// Touch records a use of a live session.
	Touch(ctx context.Context, id string, at time.Time) error
	// SetAuth records a new authentication (step-up) of a live session.
	SetAuth(ctx context.Context, id string, at time.Time) error
	// SetOrg makes org the session's current org.
	SetOrg(ctx context.Context, id, org string) error
	// Revoke ends a session at once; store.ErrNotFound when there is no
	// such live session.
	Revoke(ctx context.Context, id string, at time.Time) error
	// Prune deletes the sessions that expired or were revoked before t and
	// reports how many.
	Prune(ctx context.Context, before time.Time) (int, error)
	// Names returns the e-mail (or name) of each user id that has a
	// session, for showing who did what.
	Names(ctx context.Context, userIDs []string) (map[string]string, error)
}
