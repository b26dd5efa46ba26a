package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nimbus-build/nimbus/internal/logs"
)

// Logs is the embedded logs.Store: raw chunks in log_chunks, lines in
// log_lines (with a trigram index for search: SQLite FTS5, PostgreSQL
// pg_trgm when it could be installed), each job's ingest state in
// log_state, on the same database as the rest. Every statement that
// reads is scoped by org_id.
type Logs struct{ x repos }

var _ logs.Store = Logs{}

// Logs returns the database's log store.
func (db *DB) Logs() Logs { return Logs{db.repos} }

// unstorable reports whether a key cannot be in the tables: not UTF-8,
// or holding NUL (which PostgreSQL's text refuses). No row has it.
func unstorable(keys ...string) bool {
	for _, k := range keys {
		if !utf8.ValidString(k) || strings.IndexByte(k, 0) >= 0 {
			return true
		}
	}
	return false
}

// State implements logs.Store.
func (l Logs) State(ctx context.Context, org, job string) (logs.State, error) {
	if org == "" {
		return logs.State{}, logs.ErrNoScope
	}
	if unstorable(org, job) {
		return logs.State{Cursor: logs.Start}, nil
	}
	st := logs.State{Cursor: logs.Start}
	err := l.x.r.QueryRowContext(ctx, `SELECT version, fence, seq, used, lines, pending, step, full_log FROM log_state
		WHERE job_id = $1 AND org_id = $2`, job, org).
		Scan(&st.Version, &st.Cursor.Fence, &st.Cursor.Seq, &st.Used, &st.Lines, &st.Pending, &st.Step, &st.Full)
	if errors.Is(err, sql.ErrNoRows) {
		return logs.State{Cursor: logs.Start}, nil
	}
	if err != nil {
		return logs.State{}, fmt.Errorf("log state: %w", err)
	}
	if len(st.Pending) == 0 {
		st.Pending = nil
	}
	return st, nil
}

// insertRows bounds the rows of one INSERT (PostgreSQL takes at most
// 65535 parameters).
const insertRows = 500

// sqliteInsertRows are the rows of SQLite's INSERTs: a batch goes in
// pieces of these sizes, largest first, so that each statement's text is
// one of a few, prepared once (execPrepared) rather than parsed for each
// batch (profiled, parsing a 1,000-row INSERT cost a fifth of ingest).
var sqliteInsertRows = []int{1000, 100, 10, 1}

// pieces splits n rows into INSERTs: on SQLite of sqliteInsertRows,
// elsewhere of up to insertRows. It returns the rows of each.
func pieces(d *dialect, n int) []int {
	var out []int
	if d.name != "sqlite" {
		for ; n > 0; n -= min(n, insertRows) {
			out = append(out, min(n, insertRows))
		}
		return out
	}
	for _, size := range sqliteInsertRows {
		for ; n >= size; n -= size {
			out = append(out, size)
		}
	}
	return out
}

// Write implements logs.Store: one transaction for all the writes (on
// SQLite, one group commit with other callers' work). Each write first
// moves its job's state from the version it was made from (a conditional
// UPDATE, or an INSERT for a job's first output); a write whose state
// moved on is skipped whole and reported as logs.ErrConflict.
func (l Logs) Write(ctx context.Context, ws []logs.Write) ([]error, error) {
	errs := make([]error, len(ws))
	err := l.x.inBulkTx(ctx, func(q querier) error {
		clear(errs)
		var chunks []logs.Chunk
		var lines []logs.Line
		for i, w := range ws {
			if w.Org == "" {
				return logs.ErrNoScope
			}
			ok, err := l.moveState(ctx, q, w)
			if err != nil {
				return err
			}
			if !ok {
				errs[i] = logs.ErrConflict
				continue
			}
			chunks = append(chunks, w.Chunks...)
			lines = append(lines, w.Lines...)
		}
		if err := insertChunks(ctx, q, l.x.d, chunks); err != nil {
			return err
		}
		return insertLines(ctx, q, l.x.d, lines)
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// moveState sets the job's state to w.State if it is still at w.Prev.
func (l Logs) moveState(ctx context.Context, q querier, w logs.Write) (bool, error) {
	st := w.State
	pending := st.Pending
	if pending == nil {
		pending = []byte{}
	}
	var res sql.Result
	var err error
	if w.Prev == 0 {
		res, err = execMaybePrepared(ctx, q, `INSERT INTO log_state (job_id, org_id, version, fence, seq, used, lines, pending, step, full_log)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (job_id) DO NOTHING`,
			w.Job, w.Org, st.Version, st.Cursor.Fence, st.Cursor.Seq, st.Used, st.Lines, pending, st.Step, st.Full)
	} else {
		res, err = execMaybePrepared(ctx, q, `UPDATE log_state SET version = $3, fence = $4, seq = $5, used = $6, lines = $7, pending = $8,
			step = $9, full_log = $10 WHERE job_id = $1 AND org_id = $2 AND version = $11`,
			w.Job, w.Org, st.Version, st.Cursor.Fence, st.Cursor.Seq, st.Used, st.Lines, pending, st.Step, st.Full, w.Prev)
	}
	if err != nil {
		return false, fmt.Errorf("log state of %s: %w", w.Job, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

func insertChunks(ctx context.Context, q querier, d *dialect, chunks []logs.Chunk) error {
	for _, k := range pieces(d, len(chunks)) {
		batch := chunks[:k]
		chunks = chunks[k:]
		var sb strings.Builder
		sb.WriteString(`INSERT INTO log_chunks (job_id, org_id, fence, seq, data, created_at) VALUES `)
		args := make([]any, 0, 6*len(batch))
		for i, c := range batch {
			if i > 0 {
				sb.WriteString(", ")
			}
			placeholders(&sb, d, len(args), 6)
			args = append(args, c.Job, c.Org, c.Fence, c.Seq, c.Data, micros(c.At))
		}
		if _, err := execMaybePrepared(ctx, q, sb.String(), args...); err != nil {
			return fmt.Errorf("store log chunks: %w", err)
		}
	}
	return nil
}

func insertLines(ctx context.Context, q querier, d *dialect, lines []logs.Line) error {
	for _, k := range pieces(d, len(lines)) {
		batch := lines[:k]
		lines = lines[k:]
		var sb strings.Builder
		sb.WriteString(`INSERT INTO log_lines (job_id, org_id, line, repo, fence, seq, step, stream, created_at, text) VALUES `)
		args := make([]any, 0, 10*len(batch))
		for i, ln := range batch {
			if i > 0 {
				sb.WriteString(", ")
			}
			placeholders(&sb, d, len(args), 10)
			args = append(args, ln.Job, ln.Org, ln.N, ln.Repo, ln.Fence, ln.Seq, ln.Step, ln.Stream, micros(ln.At), ln.Text)
		}
		if _, err := execMaybePrepared(ctx, q, sb.String(), args...); err != nil {
			return fmt.Errorf("store log lines: %w", err)
		}
	}
	return nil
}

// placeholders writes "($n+1, …, $n+k)", or "(?, …, ?)" on SQLite, which
// looks numbered parameters up by name (slow past a few thousand).
func placeholders(sb *strings.Builder, d *dialect, n, k int) {
	sb.WriteByte('(')
	for j := 1; j <= k; j++ {
		if j > 1 {
			sb.WriteString(", ")
		}
		if d.name == "sqlite" {
			sb.WriteByte('?')
			continue
		}
		sb.WriteByte('$')
		sb.WriteString(strconv.Itoa(n + j))
	}
	sb.WriteByte(')')
}

// Read implements logs.Store.
func (l Logs) Read(ctx context.Context, org, job string, after logs.Cursor, limit int) ([]logs.Chunk, error) {
	if org == "" {
		return nil, logs.ErrNoScope
	}
	if unstorable(org, job) {
		return nil, nil
	}
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

const lineColumns = `l.job_id, l.org_id, l.line, l.repo, l.fence, l.seq, l.step, l.stream, l.created_at, l.text`

func scanLine(rows *sql.Rows) (logs.Line, error) {
	var ln logs.Line
	var at int64
	err := rows.Scan(&ln.Job, &ln.Org, &ln.N, &ln.Repo, &ln.Fence, &ln.Seq, &ln.Step, &ln.Stream, &at, &ln.Text)
	ln.At = fromMicros(at)
	return ln, err
}

// Lines implements logs.Store.
func (l Logs) Lines(ctx context.Context, org, job string, q logs.LineQuery) ([]logs.Line, error) {
	if org == "" {
		return nil, logs.ErrNoScope
	}
	if unstorable(org, job, q.Step) {
		return nil, nil
	}
	if q.Limit <= 0 || q.Limit > 10000 {
		q.Limit = 1000
	}
	query := `SELECT ` + lineColumns + ` FROM log_lines l WHERE l.job_id = $1 AND l.org_id = $2 AND l.line >= $3`
	args := []any{job, org, q.From}
	if q.Step != "" {
		query += ` AND l.step = $4`
		args = append(args, q.Step)
	}
	rows, err := l.x.r.QueryContext(ctx, query+` ORDER BY l.line LIMIT `+strconv.Itoa(q.Limit), args...)
	if err != nil {
		return nil, fmt.Errorf("read log lines: %w", err)
	}
	defer rows.Close()
	var out []logs.Line
	for rows.Next() {
		ln, err := scanLine(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, ln)
	}
	return out, rows.Err()
}

// Search implements logs.Store: the org's lines in the time range (and
// repository or job), newest first, narrowed by the query's longest
// literal through the trigram index, each checked against the pattern by
// logs.Collector until the query's bounds.
func (l Logs) Search(ctx context.Context, q logs.Query) (logs.Result, error) {
	if q.Org == "" {
		return logs.Result{}, logs.ErrNoScope
	}
	if unstorable(append(append([]string{q.Org, q.Repo, q.Job}, q.Literals...), q.FoldLiterals...)...) {
		return logs.Result{}, nil
	}
	where := []string{"l.org_id = $1", "l.created_at >= $2", "l.created_at < $3"}
	args := []any{q.Org, micros(q.Since), micros(q.Until)}
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, strings.ReplaceAll(cond, "$?", "$"+strconv.Itoa(len(args))))
	}
	if q.Repo != "" {
		add("l.repo = $?", q.Repo)
	}
	if q.Job != "" {
		add("l.job_id = $?", q.Job)
	}
	var fts, ftsArg string // the trigram index's condition on SQLite, if any
	for i, lit := range q.Literals {
		switch {
		case i == 0 && l.x.d.name == "sqlite":
			fts, ftsArg = "text GLOB $1", "*"+globEscape(lit)+"*"
			add(ftsOrTail("GLOB"), ftsArg)
		case l.x.d.name == "sqlite":
			add("instr(l.text, $?) > 0", lit)
		default:
			add(`l.text LIKE $?`, "%"+likeEscape(lit)+"%")
		}
	}
	// Without an exact literal, literals up to ASCII case: the trigram
	// index folds case (SQLite's FTS5 trigram tokenizer by default,
	// pg_trgm), and LIKE, lower() and ILIKE fold at least ASCII.
	for i, lit := range q.FoldLiterals {
		switch {
		case i == 0 && l.x.d.name == "sqlite" && !strings.ContainsAny(lit, "%_"):
			fts, ftsArg = "text LIKE $1", "%"+lit+"%"
			add(ftsOrTail("LIKE"), ftsArg)
		case l.x.d.name == "sqlite":
			add("instr(lower(l.text), $?) > 0", lit)
		default:
			add(`l.text ILIKE $?`, "%"+likeEscape(lit)+"%")
		}
	}
	c := logs.NewCollector(q)
	if l.x.d.name == "sqlite" {
		// The pattern runs inside SQLite, so that only matches are sorted
		// and read into Go; the lines it examines stay bounded: past
		// q.Scan candidates, only those as new as the first one beyond
		// the bound (the bound and the lines of that instant), and the
		// result is partial.
		if fts != "" {
			// Few lines hold the literal: find them through the index
			// alone, rather than walking the org's time index and
			// checking each (seconds over millions of lines).
			var n int
			err := l.x.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT rowid FROM log_lines_fts WHERE `+fts+
				` LIMIT `+strconv.Itoa(ftsDriven+1)+`)`, ftsArg).Scan(&n)
			if err != nil {
				return logs.Result{}, fmt.Errorf("search logs: %w", err)
			}
			if n <= ftsDriven {
				// A unary + keeps SQLite from using an index for a term.
				where[0], where[1], where[2] = "+l.org_id = $1", "+l.created_at >= $2", "+l.created_at < $3"
			}
		}
		var cut int64
		err := l.x.r.QueryRowContext(ctx, `SELECT l.created_at FROM log_lines l WHERE `+strings.Join(where, " AND ")+
			` ORDER BY l.created_at DESC LIMIT 1 OFFSET `+strconv.Itoa(q.Scan), args...).Scan(&cut)
		switch {
		case err == nil:
			add("l.created_at >= $?", cut)
			c.SetPartial()
		case !errors.Is(err, sql.ErrNoRows):
			return logs.Result{}, fmt.Errorf("search logs: %w", err)
		}
		add(regexpFunc+"($?, l.text)", q.Pattern)
	}
	query := `SELECT ` + lineColumns + ` FROM log_lines l WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY l.created_at DESC, l.job_id DESC, l.line DESC LIMIT ` + strconv.Itoa(q.Scan)
	if _, err := l.collect(ctx, c, query, args); err != nil {
		return logs.Result{}, err
	}
	return c.Result(), nil
}

// ftsOrTail is the condition that a line holds a literal (a GLOB or
// LIKE pattern, $?) on SQLite: the trigram index finds it in the lines it
// covers, and the lines past its mark (written, not yet indexed: see
// logindex.go) are read directly. The mark is read in the same statement,
// so in the same snapshot as the index.
func ftsOrTail(op string) string {
	return "(l.id IN (SELECT rowid FROM log_lines_fts WHERE text " + op + " $?) OR " +
		"(l.id > (SELECT indexed FROM log_lines_fts_mark) AND l.text " + op + " $?))"
}

// ftsDriven is the most lines holding a search's literal for which a
// SQLite search starts from the trigram index rather than the time index.
const ftsDriven = 100_000

// collect feeds the lines of query to c until it has enough, and
// returns how many it read.
func (l Logs) collect(ctx context.Context, c *logs.Collector, query string, args []any) (int, error) {
	rows, err := l.x.r.QueryContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("search logs: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		ln, err := scanLine(rows)
		if err != nil {
			return n, err
		}
		n++
		if !c.Add(ln) {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("search logs: %w", err)
	}
	return n, nil
}

// globEscape makes s match itself in a GLOB pattern.
func globEscape(s string) string {
	r := strings.NewReplacer("*", "[*]", "?", "[?]", "[", "[[]")
	return r.Replace(s)
}

// likeEscape makes s match itself in a LIKE pattern (PostgreSQL's default
// escape character is the backslash).
func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`)
	return r.Replace(s)
}
