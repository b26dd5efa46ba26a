package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"

	"github.com/nimbus-build/nimbus/internal/store"
)

type logs struct{ repos }

var _ store.Logs = logs{}

func (x logs) Append(ctx context.Context, chunks []store.LogChunk, limit int64) (int, error) {
	added := 0
	err := x.inTx(ctx, func(q querier) error {
		// The chunks of one call belong to one job; keep a running total
		// per job all the same.
		total, changed := map[string]int64{}, map[string]bool{}
		for _, c := range chunks {
			stored, ok := total[c.JobID]
			if !ok {
				if err := q.QueryRowContext(ctx, `SELECT log_bytes FROM jobs WHERE id = $1`, c.JobID).Scan(&stored); err != nil {
					if errors.Is(err, sql.ErrNoRows) {
						return fmt.Errorf("append log chunk: job %s: %w", c.JobID, store.ErrNotFound)
					}
					return fmt.Errorf("append log chunk: %w", err)
				}
				total[c.JobID] = stored
			}
			data := c.Data
			if limit > 0 {
				if stored >= limit {
					continue // the log is full; the notice is already there
				}
				if stored+int64(len(data)) > limit {
					data = append(data[:limit-stored:limit-stored], store.TruncationNotice(limit)...)
				}
			}
			res, err := q.ExecContext(ctx, `INSERT INTO log_chunks (job_id, fence, seq, data, created_at) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT DO NOTHING`, c.JobID, c.Fence, c.Seq, data, micros(c.At))
			if err != nil {
				return fmt.Errorf("append log chunk: %w", err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				added++
				stored += int64(len(c.Data))
				if limit > 0 {
					stored = min(stored, limit) // a cut chunk fills the log
				}
				changed[c.JobID] = true
				total[c.JobID] = stored
			}
		}
		for id := range changed {
			n := total[id]
			if _, err := q.ExecContext(ctx, `UPDATE jobs SET log_bytes = $1 WHERE id = $2`, n, id); err != nil {
				return fmt.Errorf("append log chunk: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return added, nil
}

func (x logs) Bytes(ctx context.Context, jobID string) (int64, error) {
	var n int64
	if err := x.r.QueryRowContext(ctx, `SELECT log_bytes FROM jobs WHERE id = $1`, jobID).Scan(&n); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("log size of job %s: %w", jobID, store.ErrNotFound)
		}
		return 0, fmt.Errorf("log size: %w", err)
	}
	return n, nil
}

func (x logs) Read(ctx context.Context, jobID string, after store.LogCursor, limit int) ([]store.LogChunk, error) {
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	rows, err := x.r.QueryContext(ctx, `SELECT fence, seq, data, created_at FROM log_chunks
		WHERE job_id = $1 AND (fence > $2 OR (fence = $2 AND seq > $3)) ORDER BY fence, seq LIMIT `+strconv.Itoa(limit),
		jobID, after.Fence, after.Seq)
	if err != nil {
		return nil, fmt.Errorf("read logs: %w", err)
	}
	defer rows.Close()
	var out []store.LogChunk
	for rows.Next() {
		c := store.LogChunk{JobID: jobID}
		var at int64
		if err := rows.Scan(&c.Fence, &c.Seq, &c.Data, &at); err != nil {
			return nil, err
		}
		c.At = fromMicros(at)
		out = append(out, c)
	}
	return out, rows.Err()
}
