package sqlstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nimbus-build/nimbus/internal/store"
)

type logs struct{ repos }

var _ store.Logs = logs{}

func (x logs) Append(ctx context.Context, chunks []store.LogChunk) (int, error) {
	added := 0
	err := x.inTx(ctx, func(q querier) error {
		for _, c := range chunks {
			res, err := q.ExecContext(ctx, `INSERT INTO log_chunks (job_id, fence, seq, data, created_at) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT DO NOTHING`, c.JobID, c.Fence, c.Seq, c.Data, micros(c.At))
			if err != nil {
				return fmt.Errorf("append log chunk: %w", err)
			}
			n, _ := res.RowsAffected()
			added += int(n)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return added, nil
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
