package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/nimbus-build/nimbus/internal/store"
)

type orgs struct{ repos }

var _ store.Orgs = orgs{}

const orgColumns = `id, name, github_owner_id, github_login, created_at`

func scanOrg(row interface{ Scan(...any) error }) (store.Org, error) {
	var o store.Org
	var ghID sql.NullInt64
	var created int64
	err := row.Scan(&o.ID, &o.Name, &ghID, &o.GitHubLogin, &created)
	o.GitHubOwnerID = ghID.Int64
	o.CreatedAt = fromMicros(created)
	return o, err
}

func (x orgs) Create(ctx context.Context, o store.Org) error {
	var ghID sql.NullInt64
	if o.GitHubOwnerID != 0 {
		ghID = sql.NullInt64{Int64: o.GitHubOwnerID, Valid: true}
	}
	_, err := x.exec(ctx, `INSERT INTO orgs (`+orgColumns+`) VALUES ($1, $2, $3, $4, $5)`,
		o.ID, o.Name, ghID, o.GitHubLogin, micros(o.CreatedAt))
	if err != nil {
		return conflict(err, "create org "+o.Name)
	}
	return nil
}

func (x orgs) Get(ctx context.Context, id string) (store.Org, error) {
	o, err := scanOrg(x.r.QueryRowContext(ctx, `SELECT `+orgColumns+` FROM orgs WHERE id = $1`, id))
	if err != nil {
		return o, notFound(err, "org "+id)
	}
	return o, nil
}

func (x orgs) GetByName(ctx context.Context, name string) (store.Org, error) {
	o, err := scanOrg(x.r.QueryRowContext(ctx, `SELECT `+orgColumns+` FROM orgs WHERE name = $1`, name))
	if err != nil {
		return o, notFound(err, "org "+name)
	}
	return o, nil
}

func (x orgs) GetByGitHubOwner(ctx context.Context, ownerID int64) (store.Org, error) {
	o, err := scanOrg(x.r.QueryRowContext(ctx, `SELECT `+orgColumns+` FROM orgs WHERE github_owner_id = $1`, ownerID))
	if err != nil {
		return o, notFound(err, "org for github owner")
	}
	return o, nil
}

func (x orgs) List(ctx context.Context) ([]store.Org, error) {
	rows, err := x.r.QueryContext(ctx, `SELECT `+orgColumns+` FROM orgs ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Org
	for rows.Next() {
		o, err := scanOrg(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

func (x orgs) LinkGitHub(ctx context.Context, id string, ownerID int64, login string) error {
	var ghID sql.NullInt64
	if ownerID != 0 {
		ghID = sql.NullInt64{Int64: ownerID, Valid: true}
	}
	res, err := x.exec(ctx, `UPDATE orgs SET github_owner_id = $2, github_login = $3 WHERE id = $1`, id, ghID, login)
	if err != nil {
		return conflict(err, "link org "+id)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("link org %s: %w", id, store.ErrNotFound)
	}
	return nil
}

func (x orgs) Lock(ctx context.Context, id string) error {
	var got string
	if err := x.w.QueryRowContext(ctx, `SELECT id FROM orgs WHERE id = $1`+x.d.forUpdate, id).Scan(&got); err != nil {
		return notFound(err, "lock org "+id)
	}
	return nil
}

func (x orgs) CacheTrust(ctx context.Context, orgID string) (store.CacheTrust, error) {
	t := store.CacheTrust{OrgID: orgID}
	var untrusted, acWrite string
	var updated int64
	err := x.r.QueryRowContext(ctx, `SELECT untrusted_refs, ac_write_refs, updated_by, updated_at FROM cache_trust WHERE org_id = $1`, orgID).
		Scan(&untrusted, &acWrite, &t.UpdatedBy, &updated)
	if err != nil {
		return t, notFound(err, "cache trust of org "+orgID)
	}
	t.UpdatedAt = fromMicros(updated)
	if t.UntrustedRefs, err = stringList(untrusted); err != nil {
		return t, err
	}
	if t.ACWriteRefs, err = stringList(acWrite); err != nil {
		return t, err
	}
	return t, nil
}

func (x orgs) SetCacheTrust(ctx context.Context, t store.CacheTrust) error {
	_, err := x.exec(ctx, `INSERT INTO cache_trust (org_id, untrusted_refs, ac_write_refs, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (org_id) DO UPDATE SET untrusted_refs = excluded.untrusted_refs, ac_write_refs = excluded.ac_write_refs,
		updated_by = excluded.updated_by, updated_at = excluded.updated_at`,
		t.OrgID, jsonText(nonEmpty(t.UntrustedRefs)), jsonText(nonEmpty(t.ACWriteRefs)), t.UpdatedBy, micros(t.UpdatedAt))
	if err != nil {
		return fmt.Errorf("set cache trust of org %s: %w", t.OrgID, err)
	}
	return nil
}
