package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nimbus-build/nimbus/internal/store"
)

type agents struct{ repos }

var _ store.Agents = agents{}

const agentColumns = `id, org_id, name, allowed_labels, labels, max_jobs, hostname, version, created_at, last_seen_at, disabled_at, rbs, role`

func scanAgent(row interface{ Scan(...any) error }) (store.Agent, error) {
	var a store.Agent
	var allowed, labels, rbs string
	var created, seen, disabled int64
	if err := row.Scan(&a.ID, &a.OrgID, &a.Name, &allowed, &labels, &a.MaxJobs, &a.Hostname, &a.Version, &created, &seen, &disabled, &rbs, &a.Role); err != nil {
		return a, err
	}
	if rbs != "" {
		a.RBS = new(store.AgentRBS)
		if err := json.Unmarshal([]byte(rbs), a.RBS); err != nil {
			return a, fmt.Errorf("decode agent rbs: %w", err)
		}
	}
	a.CreatedAt, a.LastSeenAt, a.DisabledAt = fromMicros(created), fromMicros(seen), fromMicros(disabled)
	var err error
	if a.AllowedLabels, err = stringList(allowed); err != nil {
		return a, err
	}
	a.Labels, err = stringList(labels)
	return a, err
}

func (x agents) Create(ctx context.Context, a store.Agent) error {
	_, err := x.exec(ctx, `INSERT INTO agents (`+agentColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
		a.ID, a.OrgID, a.Name, jsonText(nonEmpty(a.AllowedLabels)), jsonText(nonEmpty(a.Labels)), a.MaxJobs, a.Hostname, a.Version,
		micros(a.CreatedAt), micros(a.LastSeenAt), micros(a.DisabledAt), rbsText(a.RBS), a.Role)
	if err != nil {
		return conflict(err, "create agent")
	}
	return nil
}

func (x agents) Get(ctx context.Context, id string) (store.Agent, error) {
	a, err := scanAgent(x.r.QueryRowContext(ctx, `SELECT `+agentColumns+` FROM agents WHERE id = $1`, id))
	if err != nil {
		return a, notFound(err, "agent "+id)
	}
	return a, nil
}

func (x agents) List(ctx context.Context, orgID string) ([]store.Agent, error) {
	rows, err := x.r.QueryContext(ctx, `SELECT `+agentColumns+` FROM agents WHERE org_id = $1 ORDER BY created_at, id`, orgID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Agent
	for rows.Next() {
		a, err := scanAgent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func (x agents) Register(ctx context.Context, id string, labels []string, maxJobs int, hostname, version string, now time.Time) error {
	return x.one(ctx, "register agent "+id, `UPDATE agents SET labels = $2, max_jobs = $3, hostname = $4, version = $5, last_seen_at = $6 WHERE id = $1`,
		id, jsonText(nonEmpty(labels)), maxJobs, hostname, version, micros(now))
}

func (x agents) Touch(ctx context.Context, id string, now time.Time) error {
	return x.one(ctx, "touch agent "+id, `UPDATE agents SET last_seen_at = $2 WHERE id = $1`, id, micros(now))
}

func (x agents) Disable(ctx context.Context, orgID, id string, at time.Time) error {
	return x.one(ctx, "disable agent "+id, `UPDATE agents SET disabled_at = CASE WHEN disabled_at = 0 THEN $3 ELSE disabled_at END
		WHERE org_id = $1 AND id = $2`, orgID, id, micros(at))
}

// one runs an UPDATE that must touch exactly one row.
func (x agents) one(ctx context.Context, what, q string, args ...any) error {
	res, err := x.exec(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

func rbsText(r *store.AgentRBS) string {
	if r == nil {
		return ""
	}
	return jsonText(r)
}

func (x agents) SetRBS(ctx context.Context, id string, rbs *store.AgentRBS) error {
	return x.one(ctx, "set agent rbs "+id, `UPDATE agents SET rbs = $2 WHERE id = $1`, id, rbsText(rbs))
}
