package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/nimbus-build/nimbus/internal/store"
)

type tokens struct{ repos }

var _ store.Tokens = tokens{}

const apiTokenColumns = `id, org_id, name, role, hash, created_by, created_at, expires_at, revoked_at`

func scanAPIToken(row interface{ Scan(...any) error }) (store.APIToken, error) {
	var t store.APIToken
	var created, expires, revoked int64
	err := row.Scan(&t.ID, &t.OrgID, &t.Name, &t.Role, &t.Hash, &t.CreatedBy, &created, &expires, &revoked)
	t.CreatedAt, t.ExpiresAt, t.RevokedAt = fromMicros(created), fromMicros(expires), fromMicros(revoked)
	return t, err
}

func (x tokens) CreateAPIToken(ctx context.Context, t store.APIToken) error {
	_, err := x.exec(ctx, `INSERT INTO api_tokens (`+apiTokenColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		t.ID, t.OrgID, t.Name, t.Role, t.Hash, t.CreatedBy, micros(t.CreatedAt), micros(t.ExpiresAt), micros(t.RevokedAt))
	if err != nil {
		return conflict(err, "create api token")
	}
	return nil
}

func (x tokens) APITokenByHash(ctx context.Context, hash []byte) (store.APIToken, error) {
	t, err := scanAPIToken(x.r.QueryRowContext(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens WHERE hash = $1`, hash))
	if err != nil {
		return t, notFound(err, "api token")
	}
	return t, nil
}

func (x tokens) GetAPIToken(ctx context.Context, id string) (store.APIToken, error) {
	t, err := scanAPIToken(x.r.QueryRowContext(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens WHERE id = $1`, id))
	if err != nil {
		return t, notFound(err, "api token "+id)
	}
	return t, nil
}

func (x tokens) ListAPITokens(ctx context.Context, orgID string) ([]store.APIToken, error) {
	rows, err := x.r.QueryContext(ctx, `SELECT `+apiTokenColumns+` FROM api_tokens WHERE org_id = $1 ORDER BY created_at, id`, orgID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.APIToken
	for rows.Next() {
		t, err := scanAPIToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func (x tokens) RevokeAPIToken(ctx context.Context, orgID, id string, at time.Time) error {
	res, err := x.exec(ctx, `UPDATE api_tokens SET revoked_at = $3 WHERE org_id = $1 AND id = $2 AND revoked_at = 0`,
		orgID, id, micros(at))
	if err != nil {
		return fmt.Errorf("revoke api token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// Already revoked is not an error; absent (or another org's) is.
		var one int
		err := x.r.QueryRowContext(ctx, `SELECT 1 FROM api_tokens WHERE org_id = $1 AND id = $2`, orgID, id).Scan(&one)
		if err != nil {
			return notFound(err, "api token "+id)
		}
	}
	return nil
}

const joinTokenColumns = `id, org_id, hash, labels, max_jobs, created_by, created_at, expires_at, used_at, used_by, role`

func scanJoinToken(row interface{ Scan(...any) error }) (store.JoinToken, error) {
	var t store.JoinToken
	var labels string
	var created, expires, used int64
	if err := row.Scan(&t.ID, &t.OrgID, &t.Hash, &labels, &t.MaxJobs, &t.CreatedBy, &created, &expires, &used, &t.UsedBy, &t.Role); err != nil {
		return t, err
	}
	t.CreatedAt, t.ExpiresAt, t.UsedAt = fromMicros(created), fromMicros(expires), fromMicros(used)
	var err error
	t.Labels, err = stringList(labels)
	return t, err
}

func (x tokens) CreateJoinToken(ctx context.Context, t store.JoinToken) error {
	_, err := x.exec(ctx, `INSERT INTO join_tokens (`+joinTokenColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		t.ID, t.OrgID, t.Hash, jsonText(nonEmpty(t.Labels)), t.MaxJobs, t.CreatedBy, micros(t.CreatedAt), micros(t.ExpiresAt), micros(t.UsedAt), t.UsedBy,
		t.Role)
	if err != nil {
		return conflict(err, "create join token")
	}
	return nil
}

func (x tokens) ConsumeJoinToken(ctx context.Context, hash []byte, agentID string, now time.Time) (store.JoinToken, error) {
	// One conditional UPDATE: two agents racing with the same token cannot
	// both succeed.
	var t store.JoinToken
	err := x.writeRow(ctx, func(row interface{ Scan(...any) error }) error {
		var err error
		t, err = scanJoinToken(row)
		return err
	}, `UPDATE join_tokens SET used_at = $2, used_by = $3
		WHERE hash = $1 AND used_at = 0 AND expires_at > $2 RETURNING `+joinTokenColumns,
		hash, micros(now), agentID)
	if errors.Is(err, sql.ErrNoRows) {
		return t, store.ErrTokenUsed
	}
	if err != nil {
		return t, fmt.Errorf("consume join token: %w", err)
	}
	return t, nil
}
