package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/egress"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Egress is the embedded egress.Store: one job_egress row per job, its
// policy and report as JSON.
type Egress struct{ x repos }

var _ egress.Store = Egress{}

// Egress returns the database's egress store.
func (db *DB) Egress() Egress { return Egress{db.repos} }

// SetPolicy implements egress.Store.
func (e Egress) SetPolicy(ctx context.Context, org, job string, p apiv1.EgressPolicy, at time.Time) error {
	doc, err := json.Marshal(p)
	if err != nil {
		return err
	}
	_, err = e.x.exec(ctx, `INSERT INTO job_egress (job_id, org_id, policy, leased_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (job_id) DO UPDATE SET policy = excluded.policy, leased_at = excluded.leased_at, report = '', reported_at = 0
		WHERE job_egress.org_id = excluded.org_id`, job, org, string(doc), micros(at))
	if err != nil {
		return fmt.Errorf("record egress policy of %s: %w", job, err)
	}
	return nil
}

// SetReport implements egress.Store.
func (e Egress) SetReport(ctx context.Context, org, job string, r apiv1.EgressReport, at time.Time) error {
	doc, err := json.Marshal(r)
	if err != nil {
		return err
	}
	res, err := e.x.exec(ctx, `UPDATE job_egress SET report = $3, reported_at = $4 WHERE job_id = $1 AND org_id = $2`,
		job, org, string(doc), micros(at))
	if err != nil {
		return fmt.Errorf("record egress report of %s: %w", job, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("record egress report of %s: %w", job, store.ErrNotFound)
	}
	return nil
}

const egressColumns = `e.org_id, e.job_id, j.labels, e.policy, e.report, e.leased_at, e.reported_at`

func scanEgress(row interface{ Scan(...any) error }) (egress.Record, error) {
	var r egress.Record
	var labels, policy, report string
	var leased, reported int64
	if err := row.Scan(&r.Org, &r.Job, &labels, &policy, &report, &leased, &reported); err != nil {
		return r, err
	}
	var err error
	if r.Labels, err = stringList(labels); err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(policy), &r.Policy); err != nil {
		return r, fmt.Errorf("decode egress policy of %s: %w", r.Job, err)
	}
	if report != "" {
		r.Report = new(apiv1.EgressReport)
		if err := json.Unmarshal([]byte(report), r.Report); err != nil {
			return r, fmt.Errorf("decode egress report of %s: %w", r.Job, err)
		}
	}
	r.LeasedAt, r.ReportedAt = fromMicros(leased), fromMicros(reported)
	return r, nil
}

// Get implements egress.Store.
func (e Egress) Get(ctx context.Context, org, job string) (egress.Record, error) {
	r, err := scanEgress(e.x.r.QueryRowContext(ctx, `SELECT `+egressColumns+` FROM job_egress e JOIN jobs j ON j.id = e.job_id
		WHERE e.job_id = $1 AND e.org_id = $2`, job, org))
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("egress of %s: %w", job, store.ErrNotFound)
	}
	return r, err
}

// Reports implements egress.Store.
func (e Egress) Reports(ctx context.Context, org string, since time.Time, limit int) ([]egress.Record, error) {
	rows, err := e.x.r.QueryContext(ctx, `SELECT `+egressColumns+` FROM job_egress e JOIN jobs j ON j.id = e.job_id
		WHERE e.org_id = $1 AND e.reported_at >= $2 AND e.reported_at > 0 ORDER BY e.reported_at DESC, e.job_id LIMIT $3`,
		org, micros(since), limit)
	if err != nil {
		return nil, fmt.Errorf("egress reports: %w", err)
	}
	defer rows.Close()
	var out []egress.Record
	for rows.Next() {
		r, err := scanEgress(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
