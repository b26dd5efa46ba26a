package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nimbus-build/nimbus/internal/logs"
)

// Logs is the embedded logs.Store: chunks in log_chunks, each job's usage
// in log_usage, on the same database as the rest.
type Logs struct{ x repos }

var _ logs.Store = Logs{}

// Logs returns the database's log store.
func (db *DB) Logs() Logs { return Logs{db.repos} }

// Stored implements logs.Store.
func (l Logs) Stored(ctx context.Context, org, job string, keys []logs.Key) (int64, []logs.Key, error) {
	var used int64
	err := l.x.r.QueryRowContext(ctx, `SELECT bytes FROM log_usage WHERE job_id = $1 AND org_id = $2`, job, org).Scan(&used)
	if errors.Is(err, sql.ErrNoRows) {
		used = 0 // nothing stored yet
	} else if err != nil {
		return 0, nil, fmt.Errorf("log usage: %w", err)
	}
	if len(keys) == 0 {
		return used, nil, nil
	}
	// Keys of one upload share a fence and are consecutive: one range
	// query per fence.
	lo, hi := map[int64]int64{}, map[int64]int64{}
	for _, k := range keys {
		if v, ok := lo[k.Fence]; !ok || k.Seq < v {
			lo[k.Fence] = k.Seq
		}
		if v, ok := hi[k.Fence]; !ok || k.Seq > v {
			hi[k.Fence] = k.Seq
		}
	}
	want := map[logs.Key]bool{}
	for _, k := range keys {
		want[k] = true
	}
	var stored []logs.Key
	for fence := range lo {
		rows, err := l.x.r.QueryContext(ctx, `SELECT seq FROM log_chunks
			WHERE job_id = $1 AND org_id = $2 AND fence = $3 AND seq BETWEEN $4 AND $5`, job, org, fence, lo[fence], hi[fence])
		if err != nil {
			return 0, nil, fmt.Errorf("stored log chunks: %w", err)
		}
		for rows.Next() {
			k := logs.Key{Fence: fence}
			if err := rows.Scan(&k.Seq); err != nil {
				rows.Close()
				return 0, nil, err
			}
			if want[k] {
				stored = append(stored, k)
			}
		}
		if err := rows.Close(); err != nil {
			return 0, nil, err
		}
	}
	return used, stored, nil
}

// appendRows bounds the rows of one INSERT (PostgreSQL takes at most
// 65535 parameters).
const appendRows = 500

// Append implements logs.Store: one transaction for the batch, one
// INSERT per appendRows chunks, and each job's usage raised by what its
// new chunks count.
func (l Logs) Append(ctx context.Context, chunks []logs.Chunk) (int, error) {
	added := 0
	err := l.x.inTx(ctx, func(q querier) error {
		added = 0
		type job struct{ org, id string }
		counted := map[string]int64{}
		var order []job
		for batch := range slices.Chunk(chunks, appendRows) {
			var sb strings.Builder
			sb.WriteString(`INSERT INTO log_chunks (job_id, org_id, fence, seq, data, created_at) VALUES `)
			args := make([]any, 0, 6*len(batch))
			byKey := map[string]logs.Chunk{}
			for i, c := range batch {
				if i > 0 {
					sb.WriteString(", ")
				}
				n := len(args)
				fmt.Fprintf(&sb, "($%d, $%d, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4, n+5, n+6)
				args = append(args, c.Job, c.Org, c.Fence, c.Seq, c.Data, micros(c.At))
				byKey[chunkKey(c.Job, c.Fence, c.Seq)] = c
			}
			sb.WriteString(` ON CONFLICT DO NOTHING RETURNING job_id, fence, seq`)
			rows, err := q.QueryContext(ctx, sb.String(), args...)
			if err != nil {
				return fmt.Errorf("append log chunks: %w", err)
			}
			for rows.Next() {
				var id string
				var fence, seq int64
				if err := rows.Scan(&id, &fence, &seq); err != nil {
					rows.Close()
					return fmt.Errorf("append log chunks: %w", err)
				}
				c := byKey[chunkKey(id, fence, seq)]
				added++
				if _, ok := counted[id]; !ok {
					order = append(order, job{c.Org, id})
				}
				counted[id] += c.Counted
			}
			if err := rows.Close(); err != nil {
				return fmt.Errorf("append log chunks: %w", err)
			}
		}
		for _, j := range order {
			if _, err := q.ExecContext(ctx, `INSERT INTO log_usage (job_id, org_id, bytes) VALUES ($1, $2, $3)
				ON CONFLICT (job_id) DO UPDATE SET bytes = log_usage.bytes + excluded.bytes`, j.id, j.org, counted[j.id]); err != nil {
				return fmt.Errorf("append log chunks: usage of %s: %w", j.id, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return added, nil
}

func chunkKey(job string, fence, seq int64) string {
	return job + "/" + strconv.FormatInt(fence, 10) + "/" + strconv.FormatInt(seq, 10)
}

// Read implements logs.Store.
func (l Logs) Read(ctx context.Context, org, job string, after logs.Cursor, limit int) ([]logs.Chunk, error) {
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	rows, err := l.x.r.QueryContext(ctx, `SELECT fence, seq, data, created_at FROM log_chunks
		WHERE job_id = $1 AND org_id = $2 AND (fence > $3 OR (fence = $3 AND seq > $4)) ORDER BY fence, seq LIMIT `+strconv.Itoa(limit),
		job, org, after.Fence, after.Seq)
	if err != nil {
		return nil, fmt.Errorf("read logs: %w", err)
	}
	defer rows.Close()
	var out []logs.Chunk
	for rows.Next() {
		c := logs.Chunk{Org: org, Job: job}
		var at int64
		if err := rows.Scan(&c.Fence, &c.Seq, &c.Data, &at); err != nil {
			return nil, err
		}
		c.At = fromMicros(at)
		out = append(out, c)
	}
	return out, rows.Err()
}
