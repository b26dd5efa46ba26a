package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/nimbus-build/nimbus/internal/store"
)

type audit struct{ repos }

var _ store.Audit = audit{}

func (x audit) Append(ctx context.Context, e store.AuditEntry) error {
	detail := e.Detail
	if detail == nil {
		detail = map[string]string{}
	}
	_, err := x.exec(ctx, `INSERT INTO audit_log (at, org_id, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)`,
		micros(e.At), e.OrgID, e.Actor, e.Action, e.Target, jsonText(detail))
	if err != nil {
		return fmt.Errorf("append audit %s: %w", e.Action, err)
	}
	return nil
}

func (x audit) List(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, error) {
	q := `SELECT id, at, org_id, actor, action, target, detail FROM audit_log WHERE org_id = $1`
	if f.Installation {
		q = `SELECT id, at, org_id, actor, action, target, detail FROM audit_log WHERE (org_id = $1 OR org_id = '')`
	}
	args := []any{f.OrgID}
	if f.BeforeID > 0 {
		args = append(args, f.BeforeID)
		q += ` AND id < $2`
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := x.r.QueryContext(ctx, q+` ORDER BY id DESC LIMIT `+strconv.Itoa(limit), args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	var out []store.AuditEntry
	for rows.Next() {
		var e store.AuditEntry
		var at int64
		var detail string
		if err := rows.Scan(&e.ID, &at, &e.OrgID, &e.Actor, &e.Action, &e.Target, &detail); err != nil {
			return nil, err
		}
		e.At = fromMicros(at)
		if err := json.Unmarshal([]byte(detail), &e.Detail); err != nil {
			return nil, fmt.Errorf("decode audit detail: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
