package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/websession"
)

// WebSessions is the embedded websession.Store: the web_sessions table.
type WebSessions struct{ x repos }

var _ websession.Store = WebSessions{}

// WebSessions returns the database's dashboard session store.
func (db *DB) WebSessions() WebSessions { return WebSessions{db.repos} }

const webSessionColumns = `id, hash, user_id, provider, subject, email, name, roles, org_id, created_at, last_seen_at, auth_at, expires_at, revoked_at`

func scanWebSession(row interface{ Scan(...any) error }) (websession.Session, error) {
	var s websession.Session
	var roles string
	var created, seen, authAt, expires, revoked int64
	if err := row.Scan(&s.ID, &s.Hash, &s.UserID, &s.Provider, &s.Subject, &s.Email, &s.Name, &roles, &s.Org,
		&created, &seen, &authAt, &expires, &revoked); err != nil {
		return s, err
	}
	if err := json.Unmarshal([]byte(roles), &s.Roles); err != nil {
		return s, fmt.Errorf("decode roles of session %s: %w", s.ID, err)
	}
	s.CreatedAt, s.LastSeenAt, s.AuthAt = fromMicros(created), fromMicros(seen), fromMicros(authAt)
	s.ExpiresAt, s.RevokedAt = fromMicros(expires), fromMicros(revoked)
	return s, nil
}

// Create implements websession.Store.
func (x WebSessions) Create(ctx context.Context, s websession.Session) error {
	roles := s.Roles
	if roles == nil {
		roles = []websession.OrgRole{}
	}
	_, err := x.x.exec(ctx, `INSERT INTO web_sessions (`+webSessionColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
		s.ID, s.Hash, s.UserID, s.Provider, s.Subject, s.Email, s.Name, jsonText(roles), s.Org,
		micros(s.CreatedAt), micros(s.LastSeenAt), micros(s.AuthAt), micros(s.ExpiresAt), micros(s.RevokedAt))
	if err != nil {
		return conflict(err, "create web session")
	}
	return nil
}

// ByHash implements websession.Store.
func (x WebSessions) ByHash(ctx context.Context, hash []byte) (websession.Session, error) {
	s, err := scanWebSession(x.x.r.QueryRowContext(ctx, `SELECT `+webSessionColumns+` FROM web_sessions WHERE hash = $1`, hash))
	if err != nil {
		return s, notFound(err, "web session")
	}
	return s, nil
}

// update runs one UPDATE of a live session; store.ErrNotFound when none.
func (x WebSessions) update(ctx context.Context, what, set, id string, args ...any) error {
	res, err := x.x.exec(ctx, `UPDATE web_sessions SET `+set+` WHERE id = $1 AND revoked_at = 0`, append([]any{id}, args...)...)
	if err != nil {
		return fmt.Errorf("%s of web session %s: %w", what, id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%s of web session %s: %w", what, id, store.ErrNotFound)
	}
	return nil
}

// Touch implements websession.Store.
func (x WebSessions) Touch(ctx context.Context, id string, at time.Time) error {
	return x.update(ctx, "touch", `last_seen_at = $2`, id, micros(at))
}

// SetAuth implements websession.Store.
func (x WebSessions) SetAuth(ctx context.Context, id string, at time.Time) error {
	return x.update(ctx, "step up", `auth_at = $2`, id, micros(at))
}

// SetOrg implements websession.Store.
func (x WebSessions) SetOrg(ctx context.Context, id, org string) error {
	return x.update(ctx, "set org", `org_id = $2`, id, org)
}

// Revoke implements websession.Store.
func (x WebSessions) Revoke(ctx context.Context, id string, at time.Time) error {
	return x.update(ctx, "revoke", `revoked_at = $2`, id, micros(at))
}

// Prune implements websession.Store.
func (x WebSessions) Prune(ctx context.Context, before time.Time) (int, error) {
	res, err := x.x.exec(ctx, `DELETE FROM web_sessions WHERE expires_at < $1 OR (revoked_at <> 0 AND revoked_at < $1)`, micros(before))
	if err != nil {
		return 0, fmt.Errorf("prune web sessions: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// Names implements websession.Store.
func (x WebSessions) Names(ctx context.Context, userIDs []string) (map[string]string, error) {
	out := map[string]string{}
	if len(userIDs) == 0 {
		return out, nil
	}
	if len(userIDs) > 500 {
		userIDs = userIDs[:500]
	}
	ph := make([]string, len(userIDs))
	args := make([]any, len(userIDs))
	for i, id := range userIDs {
		ph[i] = fmt.Sprintf("$%d", i+1)
		args[i] = id
	}
	rows, err := x.x.r.QueryContext(ctx, `SELECT user_id, email, name FROM web_sessions WHERE user_id IN (`+strings.Join(ph, ", ")+`)
		ORDER BY created_at`, args...)
	if err != nil {
		return nil, fmt.Errorf("names of web users: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, email, name string
		if err := rows.Scan(&id, &email, &name); err != nil {
			return nil, err
		}
		if email != "" {
			out[id] = email
		} else {
			out[id] = name
		}
	}
	return out, rows.Err()
}
