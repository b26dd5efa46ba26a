package sqlstore

import (
	"context"
	"fmt"

	"github.com/nimbus-build/nimbus/internal/store"
)

type keys struct{ repos }

var _ store.Keys = keys{}

const signingKeyColumns = `id, algorithm, public_key, private_sealed, created_at, retired_at, expires_at, revoked_at`

func (x keys) CreateSigningKey(ctx context.Context, k store.SigningKey) error {
	_, err := x.exec(ctx, `INSERT INTO signing_keys (`+signingKeyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		k.ID, k.Algorithm, k.Public, k.PrivateSealed, micros(k.CreatedAt), micros(k.RetiredAt), micros(k.ExpiresAt), micros(k.RevokedAt))
	if err != nil {
		return conflict(err, "create signing key")
	}
	return nil
}

func (x keys) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	rows, err := x.r.QueryContext(ctx, `SELECT `+signingKeyColumns+` FROM signing_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	defer rows.Close()
	var out []store.SigningKey
	for rows.Next() {
		var k store.SigningKey
		var created, retired, expires, revoked int64
		if err := rows.Scan(&k.ID, &k.Algorithm, &k.Public, &k.PrivateSealed, &created, &retired, &expires, &revoked); err != nil {
			return nil, err
		}
		k.CreatedAt, k.RetiredAt, k.ExpiresAt, k.RevokedAt = fromMicros(created), fromMicros(retired), fromMicros(expires), fromMicros(revoked)
		out = append(out, k)
	}
	return out, rows.Err()
}

func (x keys) UpdateSigningKey(ctx context.Context, k store.SigningKey) error {
	res, err := x.exec(ctx, `UPDATE signing_keys SET private_sealed = $2, retired_at = $3, expires_at = $4, revoked_at = $5 WHERE id = $1`,
		k.ID, k.PrivateSealed, micros(k.RetiredAt), micros(k.ExpiresAt), micros(k.RevokedAt))
	if err != nil {
		return fmt.Errorf("update signing key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("update signing key %s: %w", k.ID, store.ErrNotFound)
	}
	return nil
}

func (x keys) PutSecret(ctx context.Context, s store.Secret) error {
	_, err := x.exec(ctx, `INSERT INTO secrets (name, sealed, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at`,
		s.Name, s.Sealed, micros(s.UpdatedAt))
	if err != nil {
		return fmt.Errorf("put secret %s: %w", s.Name, err)
	}
	return nil
}

func (x keys) GetSecret(ctx context.Context, name string) (store.Secret, error) {
	s := store.Secret{Name: name}
	var at int64
	if err := x.r.QueryRowContext(ctx, `SELECT sealed, updated_at FROM secrets WHERE name = $1`, name).Scan(&s.Sealed, &at); err != nil {
		return s, notFound(err, "secret "+name)
	}
	s.UpdatedAt = fromMicros(at)
	return s, nil
}

func (x keys) ListSecrets(ctx context.Context) ([]store.Secret, error) {
	rows, err := x.r.QueryContext(ctx, `SELECT name, sealed, updated_at FROM secrets ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	defer rows.Close()
	var out []store.Secret
	for rows.Next() {
		var s store.Secret
		var at int64
		if err := rows.Scan(&s.Name, &s.Sealed, &at); err != nil {
			return nil, err
		}
		s.UpdatedAt = fromMicros(at)
		out = append(out, s)
	}
	return out, rows.Err()
}
