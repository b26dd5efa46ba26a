package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/store"
)

type jobs struct{ repos }

var _ store.Jobs = jobs{}

const jobColumns = `id, org_id, source, job_key, state, labels, spec, attempt, max_attempts, fence, agent_id,
	lease_expires_at, cancel_requested, runner_name, exit_code, reason, created_by, created_at, not_before,
	updated_at, started_at, finished_at, github, runner_id, first_leased_at`

// live is the SQL set of states that hold a lease.
const live = `('leased', 'running')`

func scanJob(row interface{ Scan(...any) error }) (store.Job, error) {
	var j store.Job
	var key, gh sql.NullString
	var exit sql.NullInt64
	var labels, spec string
	var leaseExp, created, notBefore, updated, started, finished, leased int64
	err := row.Scan(&j.ID, &j.OrgID, &j.Source, &key, &j.State, &labels, &spec, &j.Attempt, &j.MaxAttempts,
		&j.Fence, &j.AgentID, &leaseExp, &j.CancelRequested, &j.RunnerName, &exit, &j.Reason, &j.CreatedBy,
		&created, &notBefore, &updated, &started, &finished, &gh, &j.RunnerID, &leased)
	if err != nil {
		return j, err
	}
	j.Key = key.String
	if exit.Valid {
		c := int(exit.Int64)
		j.ExitCode = &c
	}
	j.LeaseExpiresAt, j.CreatedAt, j.NotBefore = fromMicros(leaseExp), fromMicros(created), fromMicros(notBefore)
	j.UpdatedAt, j.StartedAt, j.FinishedAt = fromMicros(updated), fromMicros(started), fromMicros(finished)
	j.LeasedAt = fromMicros(leased)
	if j.Labels, err = stringList(labels); err != nil {
		return j, err
	}
	if err := json.Unmarshal([]byte(spec), &j.Spec); err != nil {
		return j, fmt.Errorf("decode job spec: %w", err)
	}
	if gh.Valid {
		j.GitHub = new(store.GitHubJob)
		if err := json.Unmarshal([]byte(gh.String), j.GitHub); err != nil {
			return j, fmt.Errorf("decode github job: %w", err)
		}
	}
	return j, nil
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func nullExit(c *int) sql.NullInt64 {
	if c == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: int64(*c), Valid: true}
}

func githubText(gh *store.GitHubJob) sql.NullString {
	if gh == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: jsonText(gh), Valid: true}
}

func (x jobs) Create(ctx context.Context, j store.Job) (store.Job, bool, error) {
	created := false
	err := x.inTx(ctx, func(q querier) error {
		res, err := q.ExecContext(ctx, `INSERT INTO jobs (`+jobColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
			$11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25) ON CONFLICT DO NOTHING`,
			j.ID, j.OrgID, j.Source, nullString(j.Key), j.State, jsonText(nonEmpty(j.Labels)), jsonText(j.Spec),
			j.Attempt, j.MaxAttempts, j.Fence, j.AgentID, micros(j.LeaseExpiresAt), j.CancelRequested, j.RunnerName,
			nullExit(j.ExitCode), j.Reason, j.CreatedBy, micros(j.CreatedAt), micros(j.NotBefore), micros(j.UpdatedAt),
			micros(j.StartedAt), micros(j.FinishedAt), githubText(j.GitHub), j.RunnerID, micros(j.LeasedAt))
		if err != nil {
			return fmt.Errorf("create job: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			if j.Key == "" {
				return fmt.Errorf("create job %s: %w", j.ID, store.ErrConflict)
			}
			// The key exists: creation is idempotent.
			existing, err := scanJob(q.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE job_key = $1`, j.Key))
			if err != nil {
				return notFound(err, "job by key")
			}
			j = existing
			return nil
		}
		if len(j.Labels) > 0 {
			// One statement for all labels: a round trip each would be
			// most of a webhook's cost on PostgreSQL.
			vals := make([]string, len(j.Labels))
			args := []any{j.ID}
			for i, l := range j.Labels {
				args = append(args, l)
				vals[i] = "($1, $" + strconv.Itoa(i+2) + ")"
			}
			if _, err := q.ExecContext(ctx, `INSERT INTO job_labels (job_id, label) VALUES `+strings.Join(vals, ", ")+` ON CONFLICT DO NOTHING`, args...); err != nil {
				return fmt.Errorf("create job labels: %w", err)
			}
		}
		created = true
		return nil
	})
	return j, created, err
}

func (x jobs) get(ctx context.Context, q querier, where string, arg any) (store.Job, error) {
	j, err := scanJob(q.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE `+where, arg))
	if err != nil {
		return j, notFound(err, "job")
	}
	return j, nil
}

func (x jobs) Get(ctx context.Context, id string) (store.Job, error) {
	return x.get(ctx, x.r, `id = $1`, id)
}

func (x jobs) GetByKey(ctx context.Context, key string) (store.Job, error) {
	return x.get(ctx, x.r, `job_key = $1`, key)
}

func (x jobs) GetForUpdate(ctx context.Context, key string) (store.Job, error) {
	return x.get(ctx, x.w, `job_key = $1`+x.d.forUpdate, key)
}

func (x jobs) FindByRunner(ctx context.Context, runnerName string) (store.Job, error) {
	return x.get(ctx, x.r, `runner_name = $1`, runnerName)
}

func (x jobs) List(ctx context.Context, f store.JobFilter) ([]store.Job, error) {
	q := `SELECT ` + jobColumns + ` FROM jobs WHERE org_id = $1`
	args := []any{f.OrgID}
	if f.State != "" {
		args = append(args, f.State)
		q += ` AND state = $` + strconv.Itoa(len(args))
	}
	if f.Before != "" {
		args = append(args, f.Before)
		q += ` AND id < $` + strconv.Itoa(len(args))
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	q += ` ORDER BY id DESC LIMIT ` + strconv.Itoa(limit)
	rows, err := x.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var out []store.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

func (x jobs) UpdateGitHub(ctx context.Context, id string, gh store.GitHubJob, now time.Time) error {
	res, err := x.exec(ctx, `UPDATE jobs SET github = $2, updated_at = $3 WHERE id = $1`, id, jsonText(gh), micros(now))
	if err != nil {
		return fmt.Errorf("update github job: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("update github job %s: %w", id, store.ErrNotFound)
	}
	return nil
}

func (x jobs) Lease(ctx context.Context, r store.LeaseRequest) (store.Job, error) {
	var job store.Job
	err := x.inTx(ctx, func(q querier) error {
		if r.MaxJobs > 0 {
			var n int
			if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM jobs WHERE agent_id = $1 AND state IN `+live, r.AgentID).Scan(&n); err != nil {
				return fmt.Errorf("lease: count agent jobs: %w", err)
			}
			if n >= r.MaxJobs {
				return fmt.Errorf("lease: agent at capacity: %w", store.ErrNotFound)
			}
		}
		args := []any{r.OrgID, micros(r.Now)}
		// A job matches when none of its labels is missing from the agent's.
		labelCond := `NOT EXISTS (SELECT 1 FROM job_labels l WHERE l.job_id = j.id`
		if len(r.Labels) > 0 {
			ph := make([]string, len(r.Labels))
			for i, l := range r.Labels {
				args = append(args, l)
				ph[i] = "$" + strconv.Itoa(len(args))
			}
			labelCond += ` AND l.label NOT IN (` + strings.Join(ph, ", ") + `)`
		}
		labelCond += `)`
		var id string
		err := q.QueryRowContext(ctx, `SELECT j.id FROM jobs j WHERE j.state = 'queued' AND j.org_id = $1
			AND j.not_before <= $2 AND `+labelCond+` ORDER BY j.id LIMIT 1`+x.d.skipLocked, args...).Scan(&id)
		if err != nil {
			return notFound(err, "lease")
		}
		now := micros(r.Now)
		job, err = scanJob(q.QueryRowContext(ctx, `UPDATE jobs SET state = 'leased', fence = fence + 1, agent_id = $2,
			lease_expires_at = $3, updated_at = $4, runner_name = '', runner_id = 0, cancel_requested = FALSE,
			first_leased_at = CASE WHEN first_leased_at = 0 THEN $4 ELSE first_leased_at END
			WHERE id = $1 AND state = 'queued' RETURNING `+jobColumns,
			id, r.AgentID, micros(r.Now.Add(r.TTL)), now))
		if err != nil {
			return notFound(err, "lease "+id)
		}
		return nil
	})
	return job, err
}

// leaseUpdate runs an UPDATE guarded by (id, agent, fence, live state). When
// it matches nothing it says why: the job finished, or the lease is not
// (or no longer) this one.
func (x jobs) leaseUpdate(ctx context.Context, what, set, extraCond string, id, agentID string, fence int64, args ...any) (store.Job, error) {
	all := append([]any{id, agentID, fence}, args...)
	var j store.Job
	err := x.writeRow(ctx, func(row interface{ Scan(...any) error }) error {
		var err error
		j, err = scanJob(row)
		return err
	}, `UPDATE jobs SET `+set+` WHERE id = $1 AND agent_id = $2 AND fence = $3 AND state IN `+live+extraCond+` RETURNING `+jobColumns, all...)
	if err == nil {
		return j, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return j, fmt.Errorf("%s %s: %w", what, id, err)
	}
	return x.whyNot(ctx, what, id, agentID, fence)
}

func (x jobs) whyNot(ctx context.Context, what, id, agentID string, fence int64) (store.Job, error) {
	cur, err := x.get(ctx, x.r, `id = $1`, id)
	if err != nil {
		return cur, fmt.Errorf("%s: %w", what, err)
	}
	if cur.Fence == fence && cur.AgentID == agentID && cur.State.Terminal() {
		return cur, fmt.Errorf("%s %s: %w", what, id, store.ErrFinished)
	}
	return cur, fmt.Errorf("%s %s (fence %d, current %d, %s): %w", what, id, fence, cur.Fence, cur.State, store.ErrStaleFence)
}

func (x jobs) SetRunner(ctx context.Context, id string, fence int64, runnerName string, runnerID int64) error {
	res, err := x.exec(ctx, `UPDATE jobs SET runner_name = $3, runner_id = $4 WHERE id = $1 AND fence = $2 AND state IN `+live, id, fence, runnerName, runnerID)
	if err != nil {
		return fmt.Errorf("set runner: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("set runner %s: %w", id, store.ErrStaleFence)
	}
	return nil
}

func (x jobs) Renew(ctx context.Context, id, agentID string, fence int64, ttl time.Duration, now time.Time) (store.Job, error) {
	return x.leaseUpdate(ctx, "renew", `lease_expires_at = $4`, "", id, agentID, fence, micros(now.Add(ttl)))
}

func (x jobs) Start(ctx context.Context, id, agentID string, fence int64, now time.Time) (store.Job, error) {
	return x.leaseUpdate(ctx, "start", `state = 'running', started_at = CASE WHEN started_at = 0 THEN $4 ELSE started_at END, updated_at = $4`,
		"", id, agentID, fence, micros(now))
}

func (x jobs) Finish(ctx context.Context, id, agentID string, fence int64, o store.Outcome, now time.Time) (store.Job, error) {
	if !o.State.Terminal() {
		return store.Job{}, fmt.Errorf("finish %s: state %q is not final", id, o.State)
	}
	// A cancelled job keeps the reason it was cancelled for (who asked).
	return x.leaseUpdate(ctx, "finish", `state = $4, exit_code = $5, finished_at = $7, updated_at = $7, lease_expires_at = 0,
		reason = CASE WHEN $4 = 'cancelled' AND cancel_requested AND reason <> '' THEN reason ELSE $6 END`,
		"", id, agentID, fence, string(o.State), nullExit(o.ExitCode), o.Reason, micros(now))
}

func (x jobs) Release(ctx context.Context, id string, fence int64, notBefore time.Time, reason string, now time.Time) (store.Job, error) {
	var j store.Job
	err := x.writeRow(ctx, func(row interface{ Scan(...any) error }) error {
		var err error
		j, err = scanJob(row)
		return err
	}, `UPDATE jobs SET state = 'queued', agent_id = '', lease_expires_at = 0,
		runner_name = '', not_before = $3, reason = $4, updated_at = $5
		WHERE id = $1 AND fence = $2 AND state = 'leased' RETURNING `+jobColumns, id, fence, micros(notBefore), reason, micros(now))
	if errors.Is(err, sql.ErrNoRows) {
		return j, fmt.Errorf("release %s: %w", id, store.ErrStaleFence)
	}
	if err != nil {
		return j, fmt.Errorf("release %s: %w", id, err)
	}
	return j, nil
}

func (x jobs) CheckLease(ctx context.Context, id, agentID string, fence int64) (store.Job, error) {
	j, err := x.get(ctx, x.r, `id = $1`, id)
	if err != nil {
		return j, err
	}
	if j.Fence == fence && j.AgentID == agentID && j.State.Live() {
		return j, nil
	}
	return x.whyNot(ctx, "check lease", id, agentID, fence)
}

func (x jobs) RequestCancel(ctx context.Context, orgID, id, reason string, now time.Time) (store.Job, error) {
	var out store.Job
	err := x.inTx(ctx, func(q querier) error {
		j, err := scanJob(q.QueryRowContext(ctx, `UPDATE jobs SET state = 'cancelled', reason = $3, finished_at = $4, updated_at = $4
			WHERE org_id = $1 AND id = $2 AND state = 'queued' RETURNING `+jobColumns, orgID, id, reason, micros(now)))
		if err == nil {
			out = j
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("cancel %s: %w", id, err)
		}
		j, err = scanJob(q.QueryRowContext(ctx, `UPDATE jobs SET cancel_requested = TRUE, reason = $3, updated_at = $4
			WHERE org_id = $1 AND id = $2 AND state IN `+live+` RETURNING `+jobColumns, orgID, id, reason, micros(now)))
		if err == nil {
			out = j
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("cancel %s: %w", id, err)
		}
		j, err = scanJob(q.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE org_id = $1 AND id = $2`, orgID, id))
		if err != nil {
			return notFound(err, "cancel "+id)
		}
		out = j
		return nil
	})
	return out, err
}

func (x jobs) ExpireLeases(ctx context.Context, now time.Time) ([]store.Expired, error) {
	var out []store.Expired
	err := x.inTx(ctx, func(q querier) error {
		var err error
		out, err = x.expire(ctx, q, now)
		return err
	})
	return out, err
}

func (x jobs) expire(ctx context.Context, q querier, now time.Time) ([]store.Expired, error) {
	rows, err := q.QueryContext(ctx, `UPDATE jobs SET
		state = CASE WHEN cancel_requested THEN 'cancelled' WHEN attempt + 1 >= max_attempts THEN 'failed' ELSE 'queued' END,
		reason = CASE WHEN cancel_requested THEN 'cancelled; the agent stopped renewing its lease'
			WHEN attempt + 1 >= max_attempts THEN 'lease expired and no attempts are left'
			ELSE 'lease expired; requeued' END,
		finished_at = CASE WHEN cancel_requested OR attempt + 1 >= max_attempts THEN $1 ELSE 0 END,
		attempt = attempt + 1, lease_expires_at = 0, runner_name = '', updated_at = $1
		WHERE state IN `+live+` AND lease_expires_at < $1 RETURNING `+jobColumns, micros(now))
	if err != nil {
		return nil, fmt.Errorf("expire leases: %w", err)
	}
	defer rows.Close()
	var out []store.Expired
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, store.Expired{Job: j, Requeued: j.State == store.JobQueued})
	}
	return out, rows.Err()
}

func (x jobs) CountByState(ctx context.Context) (map[store.JobState]int, error) {
	rows, err := x.r.QueryContext(ctx, `SELECT state, COUNT(*) FROM jobs WHERE state IN ('queued', 'leased', 'running') GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("count jobs: %w", err)
	}
	defer rows.Close()
	out := map[store.JobState]int{}
	for rows.Next() {
		var s store.JobState
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, rows.Err()
}
