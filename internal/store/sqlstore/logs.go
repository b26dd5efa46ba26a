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

func (x logs) Append(ctx context.Context, chunks []store.LogChunk, limit int64) (added int, stored int64, err error) {
	if len(chunks) == 0 {
		return 0, 0, nil
	}
	jobID := chunks[0].JobID
	for _, c := range chunks {
		if c.JobID != jobID {
			return 0, 0, fmt.Errorf("append log chunk: chunks of jobs %s and %s in one call", jobID, c.JobID)
		}
	}
	err = x.inTx(ctx, func(q querier) error {
		added = 0
		if err := q.QueryRowContext(ctx, `SELECT log_bytes FROM jobs WHERE id = $1`, jobID).Scan(&stored); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("append log chunk: job %s: %w", jobID, store.ErrNotFound)
			}
			return fmt.Errorf("append log chunk: %w", err)
		}
		before := stored
		for _, c := range chunks {
			data := c.Data
			if limit > 0 {
				if stored >= limit {
					break // the log is full; the notice is already there
				}
				if stored+int64(len(data)) > limit {
					data = append(data[:limit-stored:limit-stored], store.TruncationNotice(limit)...)
				}
			}
			res, err := q.ExecContext(ctx, `INSERT INTO log_chunks (job_id, fence, seq, data, created_at) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT DO NOTHING`, jobID, c.Fence, c.Seq, data, micros(c.At))
			if err != nil {
				return fmt.Errorf("append log chunk: %w", err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				added++
				stored += int64(len(c.Data))
				if limit > 0 {
					stored = min(stored, limit) // a cut chunk fills the log
				}
			}
		}
		if stored == before {
			return nil
		}
		if _, err := q.ExecContext(ctx, `UPDATE jobs SET log_bytes = $1 WHERE id = $2`, stored, jobID); err != nil {
			return fmt.Errorf("append log chunk: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return added, stored, nil
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
