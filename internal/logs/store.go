package logs

import (
	"context"
	"time"
)

// Chunk is a piece of a job's output, as its agent sent it. The agent
// numbers chunks from 0 per lease (Fence), so (Job, Fence, Seq) names a
// chunk: an upload sent again after a lost acknowledgement is recognised
// and kept once.
type Chunk struct {
	Org   string
	Job   string
	Fence int64
	Seq   int64
	Data  []byte
	At    time.Time
	// Counted is how many bytes of Data count against the job's limit:
	// all of them, except in the chunk cut at the limit, whose notice does
	// not count. Set on Append, zero on Read.
	Counted int64
}

// Key is what names a chunk within its job.
type Key struct {
	Fence int64
	Seq   int64
}

// Key returns the chunk's key.
func (c Chunk) Key() Key { return Key{Fence: c.Fence, Seq: c.Seq} }

// Cursor is a position in a job's log: after (Fence, Seq). The start of
// a log is Start.
type Cursor struct {
	Fence int64
	Seq   int64
}

// Start is the cursor before the first chunk of any log.
var Start = Cursor{Fence: 0, Seq: -1}

// Store keeps jobs' output. Implementations: internal/store/sqlstore
// (SQLite and PostgreSQL, the embedded default); a column store such as
// ClickHouse fits the same shape: appends are batches of any jobs'
// chunks, idempotent per (job, fence, seq), every chunk carries its org,
// and every read is scoped to an org and ordered by cursor.
//
// A Store does not decide what to keep: the Service checks the lease,
// applies the job's limit and cuts the log; the Store keeps what it is
// given, once, and adds up what each job has used. Conformance:
// internal/logs/logstest.
type Store interface {
	// Stored returns the bytes of the job's output counted against its
	// limit so far, and which of keys are stored already.
	Stored(ctx context.Context, org, job string, keys []Key) (used int64, stored []Key, err error)
	// Append stores a batch of chunks, of one job or several. A chunk
	// whose (Job, Fence, Seq) is stored already is skipped, even within
	// the batch; each chunk stored adds its Counted to its job's usage.
	// It returns how many chunks were new.
	Append(ctx context.Context, chunks []Chunk) (added int, err error)
	// Read returns up to limit chunks of org's job after the cursor, in
	// order (limit <= 0: a default). A job of another org has none.
	Read(ctx context.Context, org, job string, after Cursor, limit int) ([]Chunk, error)
}
