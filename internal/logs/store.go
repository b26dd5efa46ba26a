package logs

import (
	"context"
	"errors"
	"time"
)

// Chunk is a piece of a job's output, as its agent sent it. The agent
// numbers chunks from 0 per lease (Fence), so (Job, Fence, Seq) names a
// chunk: an upload sent again after a lost acknowledgement is recognised
// and kept once. Chunks are the raw output, byte for byte (the live tail
// and the raw download read them); Lines are made from them.
type Chunk struct {
	Org   string
	Job   string
	Fence int64
	Seq   int64
	Data  []byte
	At    time.Time
}

// Cursor is a position in a job's log: after the chunk (Fence, Seq). The
// start of a log is Start.
type Cursor struct {
	Fence int64
	Seq   int64
}

// Start is the cursor before the first chunk of any log.
var Start = Cursor{Fence: 0, Seq: -1}

// Before reports whether c comes before d.
func (c Cursor) Before(d Cursor) bool {
	return c.Fence < d.Fence || c.Fence == d.Fence && c.Seq < d.Seq
}

// Streams of a line.
const (
	// StreamOutput is the workload's output: its stdout and stderr,
	// interleaved as written (the sandbox gives it one pipe, which keeps
	// their order).
	StreamOutput = "output"
	// StreamNimbus is what Nimbus adds: the truncation notice.
	StreamNimbus = "nimbus"
)

// Line is one line of a job's output, without its line ending.
type Line struct {
	Org string
	Job string
	// Repo is the job's repository (GitHub jobs; empty for others), kept
	// on each line so that a search can be narrowed to it.
	Repo string
	// N numbers the job's lines from 1, across its attempts.
	N int64
	// Fence and Seq name the chunk the line ended in.
	Fence  int64
	Seq    int64
	Step   string
	Stream string
	At     time.Time
	// Text is the line as written (ANSI escapes kept), at most MaxLine
	// bytes: a longer line goes on in the next one.
	Text string
}

// State is what ingest knows of a job's log: where it is, what it used
// of its limit, and the line being written. Each Write moves it on; it
// is a pure function of the chunks applied, so that applying the same
// chunk to the same state twice makes the same lines.
type State struct {
	// Version counts the writes applied (0: none): a Write applies only
	// onto the version it was made from.
	Version int64
	// Cursor is the last chunk applied (Start: none).
	Cursor Cursor
	// Used is the bytes of output counted against the job's limit.
	Used int64
	// Lines is how many lines are stored: the next is Lines+1.
	Lines int64
	// Pending is the line being written: bytes after the last newline.
	Pending []byte
	// Step is the step the next line belongs to.
	Step string
	// Full: the log reached its limit and ends with the notice.
	Full bool
}

// Write is what one upload adds to a job's log: its chunks, the lines
// they completed and the job's state after them. It applies only onto
// the state it was made from (Prev).
type Write struct {
	Org string
	Job string
	// Prev is the version of the state the write was made from.
	Prev   int64
	State  State
	Chunks []Chunk
	Lines  []Line
}

// LineQuery selects lines of one job.
type LineQuery struct {
	// From is the first line number wanted (≥ 1).
	From int64
	// Step, when set, keeps only that step's lines.
	Step string
	// Limit bounds the lines returned (≤ 0: a default).
	Limit int
}

// Search limits.
const (
	// MaxLine is the longest line stored; a longer one is cut there and
	// goes on in the next line.
	MaxLine = 64 << 10
	// MaxPattern is the longest search pattern.
	MaxPattern = 1 << 10
	// MaxRange is the longest time range a search covers.
	MaxRange = 92 * 24 * time.Hour
	// MaxSearchLines is the most lines one search returns.
	MaxSearchLines = 1000
	// DefaultScan is how many candidate lines a search examines at most.
	DefaultScan = 1_000_000
	// maxResultBytes bounds the text a search returns.
	maxResultBytes = 4 << 20
)

// Query is a search of one org's logs, built and bounded by
// NewQuery: a store runs it as it is.
type Query struct {
	// Org scopes the search: every store adds it to every statement.
	Org string
	// Pattern is the RE2 regular expression (Go syntax) lines must match;
	// Literals are strings every match contains (a store may use them to
	// find candidates through an index; it still checks Pattern).
	Pattern  string
	Literals []string
	// FoldLiterals, when there are no Literals, are strings every match
	// contains up to ASCII case (lower case): a store may find candidates
	// with a case-insensitive index lookup.
	FoldLiterals []string
	// Repo and Job, when set, narrow the search.
	Repo string
	Job  string
	// Since ≤ a line's time < Until.
	Since, Until time.Time
	// Limit bounds the lines returned, newest first.
	Limit int
	// Scan bounds the candidate lines examined; Result.Partial says it
	// was reached.
	Scan int
	// Timeout bounds the search's execution time.
	Timeout time.Duration
}

// Result is what a search found.
type Result struct {
	// Lines are the matches, newest first (then by job and line).
	Lines []Line
	// Jobs counts the matching lines of each job among those examined,
	// newest job first.
	Jobs []JobCount
	// Partial: the scan bound, the result bound or the time bound was
	// reached; more lines may match.
	Partial bool
}

// JobCount is how many lines of a job matched.
type JobCount struct {
	Job     string
	Repo    string
	Matches int
	// Latest is the time of its newest match.
	Latest time.Time
}

// ErrConflict: a Write did not apply because the job's log moved on
// since its Prev (another replica applied it, or an upload of it).
var ErrConflict = errors.New("logs: the job's log moved on")

// ErrNoScope: a read without an org. No store runs one.
var ErrNoScope = errors.New("logs: a read needs the caller's org")

// Store keeps jobs' output. Implementations: internal/store/sqlstore
// (SQLite and PostgreSQL, the embedded default) and internal/logs/clickhouse.
// Every read is scoped to an org (a store refuses one without, with
// ErrNoScope); every chunk and line carries its org.
//
// A Store does not decide what to keep: the Service checks the lease,
// orders the chunks, applies the job's limit, cuts lines and moves the
// State; the Store keeps what it is given, and applies a Write only onto
// the state it was made from. Conformance: internal/logs/logstest.
type Store interface {
	// State returns the job's ingest state (the zero state with Cursor
	// Start for a job without output).
	State(ctx context.Context, org, job string) (State, error)
	// Write applies writes, of one job or several, each one whole or not
	// at all. A write whose Prev is not the job's cursor any more is not
	// applied: its entry of the returned slice is ErrConflict (err is for
	// a failure of the whole call). A store that cannot compare and set
	// atomically (ClickHouse) still refuses a write it can see is stale,
	// and relies on writes being deterministic: two replicas applying
	// the same upload make the same rows, which reads see once.
	Write(ctx context.Context, ws []Write) ([]error, error)
	// Read returns up to limit chunks of org's job after the cursor, in
	// order (limit ≤ 0: a default).
	Read(ctx context.Context, org, job string, after Cursor, limit int) ([]Chunk, error)
	// Lines returns org's job's lines from q.From, in order.
	Lines(ctx context.Context, org, job string, q LineQuery) ([]Line, error)
	// Search runs a query built by NewQuery.
	Search(ctx context.Context, q Query) (Result, error)
}
