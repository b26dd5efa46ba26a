// Package clickhouse is the logs.Store for teams with many agents: jobs'
// lines, raw chunks and ingest states in ClickHouse (18.16 or later)
// through its HTTP interface. Tables are partitioned by day and ordered
// by (org, job, …), so every read, scoped to one org, reads that org's
// part of the primary index; retention drops whole days.
//
// Every statement is built here, with values quoted by quote (or sent in
// RowBinary, where nothing is syntax), and every read carries the org and
// runs read-only (readonly=2) under a time bound.
//
// ClickHouse has no transactions: a write inserts its lines and chunks,
// then the job's new state, which is what makes them count. A write is
// refused when the job's state moved on, but two replicas could both
// apply one; they make the same rows (ingest is deterministic), and reads
// collapse duplicates (LIMIT 1 BY). Rows of a write whose state never
// landed (the server died between the inserts, and the agent with the
// lease) are superseded by the next attempt's lines, which carry a
// higher fence; its raw chunks may still show in the raw output of the
// attempt they belong to.
package clickhouse

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nimbus-build/nimbus/internal/logs"
)

// Store is the ClickHouse logs.Store.
type Store struct {
	c  *client
	db string
	// ttl: the server applies table TTLs (19.6 and later); else
	// retention drops old partitions (DropBefore).
	ttl bool
	// indexFrom: lines before this time (µs) may be missing from
	// log_terms (stored before it existed); a search reaching back
	// before it scans.
	indexFrom int64
	// useIndex: searches look up candidates in log_terms (tests turn it
	// off to compare with the scan).
	useIndex bool
	terms    termIndex
}

var _ logs.Store = (*Store)(nil)

// Options configure Open.
type Options struct {
	// HTTPClient sends the requests (default: a new one).
	HTTPClient *http.Client
	// Retention, when set on a server that has table TTLs, is given to
	// every table; otherwise DropBefore enforces it.
	Retention time.Duration
}

var validDB = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// Open connects to dsn, http://[user[:password]@]host:port/database
// (database default "nimbus"), and creates the database and tables
// that are missing.
func Open(ctx context.Context, dsn string, o Options) (*Store, error) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("clickhouse: %q: want http://[user[:password]@]host:port/database", dsn)
	}
	db := strings.Trim(u.Path, "/")
	if db == "" {
		db = "nimbus"
	}
	if !validDB.MatchString(db) {
		return nil, fmt.Errorf("clickhouse: database %q: letters, digits and _", db)
	}
	c := &client{base: &url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/"}, user: "default", http: o.HTTPClient}
	if u.User != nil {
		c.user = u.User.Username()
		c.password, _ = u.User.Password()
	}
	if c.http == nil {
		c.http = &http.Client{}
	}
	s := &Store{c: c, db: db, useIndex: true}
	v, err := c.do(ctx, "SELECT version()", nil, nil)
	if err != nil {
		return nil, err
	}
	s.ttl = versionAtLeast(strings.TrimSpace(string(v)), 19, 6)
	if err := s.createTables(ctx, o.Retention); err != nil {
		return nil, err
	}
	return s, nil
}

func versionAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	return err1 == nil && err2 == nil && (ma > major || ma == major && mi >= minor)
}

// day is the partition of a row: the day of its time (microseconds).
const day = "toYYYYMMDD(toDateTime(intDiv(at_us, 1000000)))"

func (s *Store) createTables(ctx context.Context, retention time.Duration) error {
	ttl := ""
	if s.ttl && retention > 0 {
		ttl = fmt.Sprintf(" TTL toDateTime(intDiv(at_us, 1000000)) + INTERVAL %d DAY", max(1, int(retention/(24*time.Hour))))
	}
	if _, err := s.c.do(ctx, "CREATE DATABASE IF NOT EXISTS "+s.db, nil, nil); err != nil {
		return err
	}
	had, err := s.c.do(ctx, "EXISTS TABLE "+s.db+".log_terms", nil, nil)
	if err != nil {
		return err
	}
	termsTTL := ""
	if ttl != "" {
		termsTTL = strings.Replace(ttl, "at_us", "end_us", 1)
	}
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS ` + s.db + `.log_lines (
			org String, job String, line UInt64, fence Int64, seq Int64, repo String,
			step String, stream String, at_us Int64, text String
		) ENGINE = ReplacingMergeTree PARTITION BY ` + day + ` ORDER BY (org, job, line, fence)` + ttl,
		`CREATE TABLE IF NOT EXISTS ` + s.db + `.log_chunks (
			org String, job String, fence Int64, seq Int64, at_us Int64, data String
		) ENGINE = ReplacingMergeTree PARTITION BY ` + day + ` ORDER BY (org, job, fence, seq)` + ttl,
		`CREATE TABLE IF NOT EXISTS ` + s.db + `.log_state (
			org String, job String, version UInt64, fence Int64, seq Int64, used Int64, lines Int64,
			pending String, step String, full UInt8, at_us Int64
		) ENGINE = ReplacingMergeTree(version) PARTITION BY ` + day + ` ORDER BY (org, job)` + ttl,
		`CREATE TABLE IF NOT EXISTS ` + s.db + `.log_terms (
			org String, term UInt32, job String, block UInt64, end_us Int64
		) ENGINE = MergeTree PARTITION BY ` + strings.Replace(day, "at_us", "end_us", 1) + ` ORDER BY (org, term, job, block)` + termsTTL,
		`CREATE TABLE IF NOT EXISTS ` + s.db + `.log_index (from_us Int64) ENGINE = Log`,
	}
	for _, q := range stmts {
		if _, err := s.c.do(ctx, q, nil, nil); err != nil {
			return err
		}
	}
	if strings.TrimSpace(string(had)) == "0" {
		// Lines stored before the index existed are not in it: searches
		// reaching back before them scan (until retention drops them).
		if _, err := s.c.do(ctx, `INSERT INTO `+s.db+`.log_index SELECT f FROM (SELECT max(at_us) + 1 AS f, count() AS n FROM `+s.db+`.log_lines) WHERE n > 0`, nil, nil); err != nil {
			return err
		}
	}
	out, err := s.c.do(ctx, `SELECT max(from_us) FROM `+s.db+`.log_index FORMAT TabSeparated`, nil, readSettings(time.Minute))
	if err != nil {
		return err
	}
	s.indexFrom, _ = strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	return nil
}

// DropDatabase removes the store's database (tests' throwaway stores).
func (s *Store) DropDatabase(ctx context.Context) error {
	_, err := s.c.do(ctx, "DROP DATABASE IF EXISTS "+s.db, nil, nil)
	return err
}

// DropBefore removes the days before t from every table: retention on a
// server without table TTLs. It returns how many partitions went.
func (s *Store) DropBefore(ctx context.Context, t time.Time) (int, error) {
	out, err := s.c.do(ctx, `SELECT DISTINCT table, partition FROM system.parts WHERE active AND database = `+quote(s.db)+
		` AND table IN ('log_lines', 'log_chunks', 'log_state', 'log_terms') FORMAT TabSeparated`, nil, readSettings(time.Minute))
	if err != nil {
		return 0, err
	}
	cut, _ := strconv.Atoi(t.UTC().Format("20060102"))
	n := 0
	for _, row := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		table, part, ok := strings.Cut(row, "\t")
		p, err := strconv.Atoi(part)
		if !ok || err != nil || p >= cut || (table != "log_lines" && table != "log_chunks" && table != "log_state" && table != "log_terms") {
			continue
		}
		if _, err := s.c.do(ctx, fmt.Sprintf("ALTER TABLE %s.%s DROP PARTITION %d", s.db, table, p), nil, nil); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// RunRetention drops the days older than keep every hour until ctx ends,
// on a server without table TTLs (with them, the tables expire rows
// themselves).
func (s *Store) RunRetention(ctx context.Context, keep time.Duration, log *slog.Logger) {
	if s.ttl {
		return
	}
	for {
		if n, err := s.DropBefore(ctx, time.Now().Add(-keep)); err != nil {
			log.Warn("log retention", "err", err)
		} else if n > 0 {
			log.Info("log retention: dropped old days", "partitions", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Hour):
		}
	}
}

// scope is the org condition every read starts with: no read is built
// without it.
func scope(org string) (string, error) {
	if org == "" {
		return "", logs.ErrNoScope
	}
	return "org = " + quote(org), nil
}

// State implements logs.Store.
func (s *Store) State(ctx context.Context, org, job string) (logs.State, error) {
	where, err := scope(org)
	if err != nil {
		return logs.State{}, err
	}
	out, err := s.c.do(ctx, `SELECT version, fence, seq, used, lines, pending, step, full FROM `+s.db+`.log_state
		WHERE `+where+` AND job = `+quote(job)+` ORDER BY version DESC LIMIT 1 FORMAT RowBinary`, nil, readSettings(30*time.Second))
	if err != nil {
		return logs.State{}, err
	}
	st := logs.State{Cursor: logs.Start}
	if len(out) == 0 {
		return st, nil
	}
	r := rowReader{b: out}
	st.Version = int64(r.u64())
	st.Cursor.Fence, st.Cursor.Seq, st.Used, st.Lines = r.i64(), r.i64(), r.i64(), r.i64()
	st.Pending = r.bytes()
	st.Step = r.str()
	st.Full = r.u8()
	if r.err != nil {
		return logs.State{}, r.err
	}
	if len(st.Pending) == 0 {
		st.Pending = nil
	}
	return st, nil
}

// Write implements logs.Store: it refuses the writes whose job moved on
// since their Prev, then inserts the others' lines, chunks and states (in
// that order: the state makes them count).
func (s *Store) Write(ctx context.Context, ws []logs.Write) ([]error, error) {
	errs := make([]error, len(ws))
	if len(ws) == 0 {
		return errs, nil
	}
	var keys []string
	for _, w := range ws {
		if w.Org == "" {
			return nil, logs.ErrNoScope
		}
		keys = append(keys, "("+quote(w.Org)+", "+quote(w.Job)+")")
	}
	out, err := s.c.do(ctx, `SELECT org, job, max(version) FROM `+s.db+`.log_state WHERE (org, job) IN (`+strings.Join(keys, ", ")+
		`) GROUP BY org, job FORMAT RowBinary`, nil, readSettings(30*time.Second))
	if err != nil {
		return nil, err
	}
	versions := map[[2]string]int64{}
	for r := (rowReader{b: out}); r.more(); {
		org, job, v := r.str(), r.str(), int64(r.u64())
		if r.err != nil {
			return nil, r.err
		}
		versions[[2]string{org, job}] = v
	}
	rows := encodeWrites(ws, versions, errs, &s.terms)
	lines, terms, chunks, states, adds := rows.lines, rows.terms, rows.chunks, rows.states, rows.adds
	// Lines, their index rows and chunks at once (an insert and a part on
	// the server each), then the states, which make them count.
	var g errgroup.Group
	for _, ins := range []struct {
		table string
		rows  []byte
	}{{"log_lines", lines.b}, {"log_terms", terms.b}, {"log_chunks", chunks.b}} {
		if len(ins.rows) > 0 {
			g.Go(func() error { return s.insert(ctx, ins.table, ins.rows) })
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	s.terms.commit(adds)
	if len(states.b) > 0 {
		if err := s.insert(ctx, "log_state", states.b); err != nil {
			return nil, err
		}
	}
	return errs, nil
}

// writeRows are the RowBinary rows of writes, and the index rows they
// add (termIndex.commit, once written).
type writeRows struct {
	lines, terms, chunks, states rowWriter
	adds                         []termAdd
}

// encodeWrites makes the rows of the writes that apply onto versions
// (the jobs' stored states); errs gets the others' ErrConflict.
func encodeWrites(ws []logs.Write, versions map[[2]string]int64, errs []error, x *termIndex) writeRows {
	var r writeRows
	// Sized once: the strings' bytes, their lengths (varints of at most
	// 3 bytes: a line is at most 64 KiB) and the integers.
	var nl, nc int
	for _, w := range ws {
		for _, l := range w.Lines {
			nl += len(l.Org) + len(l.Job) + len(l.Repo) + len(l.Step) + len(l.Stream) + len(l.Text) + 6*3 + 5*8
		}
		for _, c := range w.Chunks {
			nc += len(c.Org) + len(c.Job) + len(c.Data) + 3*binary.MaxVarintLen64 + 3*8
		}
	}
	r.lines.b = make([]byte, 0, nl)
	r.chunks.b = make([]byte, 0, nc)
	seen := map[[2]string]bool{}
	for i, w := range ws {
		k := [2]string{w.Org, w.Job}
		if versions[k] != w.Prev || seen[k] {
			errs[i] = logs.ErrConflict
			continue
		}
		seen[k] = true
		for _, l := range w.Lines {
			writeLineRow(&r.lines, lineRow{org: l.Org, job: l.Job, line: l.N, fence: l.Fence, seq: l.Seq, repo: l.Repo,
				step: l.Step, stream: l.Stream, atUS: l.At.UnixMicro(), text: l.Text})
		}
		r.adds = x.rows(w.Lines, r.adds)
		for _, c := range w.Chunks {
			r.chunks.str(c.Org)
			r.chunks.str(c.Job)
			r.chunks.i64(c.Fence)
			r.chunks.i64(c.Seq)
			r.chunks.i64(c.At.UnixMicro())
			r.chunks.bytes(c.Data)
		}
		st := w.State
		r.states.str(w.Org)
		r.states.str(w.Job)
		r.states.u64(uint64(st.Version))
		r.states.i64(st.Cursor.Fence)
		r.states.i64(st.Cursor.Seq)
		r.states.i64(st.Used)
		r.states.i64(st.Lines)
		r.states.bytes(st.Pending)
		r.states.str(st.Step)
		r.states.u8(st.Full)
		r.states.i64(time.Now().UnixMicro())
	}
	writeTermRows(&r.terms, r.adds)
	return r
}

func (s *Store) insert(ctx context.Context, table string, rows []byte) error {
	_, err := s.c.do(ctx, "INSERT INTO "+s.db+"."+table+" FORMAT RowBinary", rows, nil)
	return err
}

// Read implements logs.Store: the job's chunks up to its state's cursor.
func (s *Store) Read(ctx context.Context, org, job string, after logs.Cursor, limit int) ([]logs.Chunk, error) {
	st, err := s.State(ctx, org, job)
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	where, _ := scope(org)
	out, err := s.c.do(ctx, fmt.Sprintf(`SELECT fence, seq, at_us, data FROM %s.log_chunks
		WHERE %s AND job = %s AND (fence > %d OR (fence = %d AND seq > %d)) AND (fence < %d OR (fence = %d AND seq <= %d))
		ORDER BY fence, seq LIMIT 1 BY fence, seq LIMIT %d FORMAT RowBinary`,
		s.db, where, quote(job), after.Fence, after.Fence, after.Seq, st.Cursor.Fence, st.Cursor.Fence, st.Cursor.Seq, limit),
		nil, readSettings(30*time.Second))
	if err != nil {
		return nil, err
	}
	var chunks []logs.Chunk
	for r := (rowReader{b: out}); r.more(); {
		c := logs.Chunk{Org: org, Job: job, Fence: r.i64(), Seq: r.i64(), At: time.UnixMicro(r.i64()).UTC(), Data: r.bytes()}
		if r.err != nil {
			return nil, r.err
		}
		chunks = append(chunks, c)
	}
	return chunks, nil
}

// lineRow is a row of log_lines.
type lineRow struct {
	org, job           string
	line               int64
	fence, seq         int64
	repo, step, stream string
	atUS               int64
	text               string
}

const lineCols = "org, job, line, fence, seq, repo, step, stream, at_us, text"

func writeLineRow(w *rowWriter, l lineRow) {
	w.str(l.org)
	w.str(l.job)
	w.u64(uint64(l.line))
	w.i64(l.fence)
	w.i64(l.seq)
	w.str(l.repo)
	w.str(l.step)
	w.str(l.stream)
	w.i64(l.atUS)
	w.str(l.text)
}

// decodeLines reads rows of lineCols; a row of another org than org is
// an error (the query asked for org's rows only).
func decodeLines(b []byte, org string) ([]logs.Line, error) {
	var out []logs.Line
	for r := (rowReader{b: b}); r.more(); {
		l := logs.Line{Org: r.str(), Job: r.str(), N: int64(r.u64()), Fence: r.i64(), Seq: r.i64(), Repo: r.str(),
			Step: r.str(), Stream: r.str(), At: time.UnixMicro(r.i64()).UTC(), Text: r.str()}
		if r.err != nil {
			return nil, r.err
		}
		if l.Org != org {
			return nil, fmt.Errorf("clickhouse: a row of another org in an answer for %q", org)
		}
		out = append(out, l)
	}
	return out, nil
}

// Lines implements logs.Store: per line number, the row of the highest
// fence, up to the state's last line.
func (s *Store) Lines(ctx context.Context, org, job string, q logs.LineQuery) ([]logs.Line, error) {
	where, err := scope(org)
	if err != nil {
		return nil, err
	}
	if q.Limit <= 0 || q.Limit > 10000 {
		q.Limit = 1000
	}
	step := ""
	if q.Step != "" {
		step = " WHERE step = " + quote(q.Step)
	}
	// The lines the job's newest state counts, read in the same query
	// (one round trip, which a live tail pays for every wake-up): a job
	// without a state has none (the empty subquery is NULL, and so is
	// the comparison).
	stateLines := fmt.Sprintf(`(SELECT lines FROM %s.log_state WHERE %s AND job = %s ORDER BY version DESC LIMIT 1)`,
		s.db, where, quote(job))
	out, err := s.c.do(ctx, fmt.Sprintf(`SELECT %s FROM (SELECT %s FROM %s.log_lines
		WHERE %s AND job = %s AND line >= %d AND line <= %s ORDER BY line, fence DESC LIMIT 1 BY line)%s
		ORDER BY line LIMIT %d FORMAT RowBinary`,
		lineCols, lineCols, s.db, where, quote(job), max(q.From, 1), stateLines, step, q.Limit), nil, readSettings(30*time.Second))
	if err != nil {
		return nil, err
	}
	return decodeLines(out, org)
}

// Search implements logs.Store: the org's lines in the time range (and
// repository or job) holding the query's literals and matching its
// pattern (rewritten for the server's match(), so that lines that cannot
// match are dropped before they are sorted and sent), newest first, each
// checked again against the Go pattern by logs.Collector, within the
// query's bounds (rows read, execution time).
func (s *Store) Search(ctx context.Context, q logs.Query) (logs.Result, error) {
	where, err := scope(q.Org)
	if err != nil {
		return logs.Result{}, err
	}
	conds := []string{where, fmt.Sprintf("at_us >= %d", q.Since.UnixMicro()), fmt.Sprintf("at_us < %d", q.Until.UnixMicro())}
	if q.Repo != "" {
		conds = append(conds, "repo = "+quote(q.Repo))
	}
	if q.Job != "" {
		conds = append(conds, "job = "+quote(q.Job))
	}
	// The conditions on the text go first (PREWHERE): the server reads
	// the text column alone, and the other columns only of the granules
	// where a line passes them. Without a literal, the pattern itself
	// (search) goes there.
	var pre []string
	for _, lit := range q.Literals {
		pre = append(pre, "position(text, "+quote(lit)+") > 0")
	}
	if s.useIndex && q.Since.UnixMicro() >= s.indexFrom {
		start := time.Now()
		rs, ok, err := s.candidates(ctx, q)
		if q.Timeout > 0 { // one time bound for the lookup and the read after it
			q.Timeout = max(q.Timeout-time.Since(start), time.Second)
		}
		if err != nil {
			return logs.Result{}, searchErr(err)
		}
		if ok && len(rs) == 0 {
			return logs.NewCollector(q).Result(), nil
		}
		if ok {
			conds = append(conds, rangesCond(rs))
		}
	}
	out, err := s.search(ctx, q, conds, pre, true)
	var ce *Error
	if errors.As(err, &ce) && cannotCompile(ce.Message) {
		// A rewrite past the server's RE2 program size: filter in Go.
		out, err = s.search(ctx, q, conds, pre, false)
	}
	if err != nil {
		return logs.Result{}, searchErr(err)
	}
	c := logs.NewCollector(q)
	lines, err := decodeLines(out, q.Org)
	if err != nil {
		return logs.Result{}, err
	}
	for _, l := range lines {
		if !c.Add(l) {
			break
		}
	}
	return c.Result(), nil
}

// serverError reports whether msg is the server's error code (named
// name in versions after 18.16, which gives the number alone).
func serverError(msg string, code int, name string) bool {
	return strings.HasPrefix(msg, "Code: "+strconv.Itoa(code)+",") || strings.Contains(msg, name)
}

// cannotCompile reports whether the server refused a statement's regular
// expression.
func cannotCompile(msg string) bool { return serverError(msg, 427, "CANNOT_COMPILE_REGEXP") }

// searchErr maps the server's time bound to context.DeadlineExceeded.
func searchErr(err error) error {
	var ce *Error
	if errors.As(err, &ce) && serverError(ce.Message, 159, "TIMEOUT_EXCEEDED") {
		return context.DeadlineExceeded
	}
	return err
}

// candidates looks up in log_terms the line ranges that may hold q's
// matches: the blocks of q's jobs (in its time range) whose lines hold
// every trigram of its literals, adjacent blocks merged. ok is false
// when the index does not serve q: no literal of 3 bytes, or more than
// maxRanges ranges (not selective: the search scans).
func (s *Store) candidates(ctx context.Context, q logs.Query) (rs []lineRange, ok bool, err error) {
	terms := queryTerms(q)
	if len(terms) == 0 {
		return nil, false, nil
	}
	where, err := scope(q.Org)
	if err != nil {
		return nil, false, err
	}
	ts := make([]string, len(terms))
	for i, t := range terms {
		ts[i] = strconv.FormatUint(uint64(t), 10)
	}
	conds := []string{where, "term IN (" + strings.Join(ts, ", ") + ")",
		fmt.Sprintf("end_us >= %d", q.Since.UnixMicro()), fmt.Sprintf("end_us < %d", q.Until.UnixMicro()+dayUS)}
	if q.Job != "" {
		conds = append(conds, "job = "+quote(q.Job))
	}
	out, err := s.c.do(ctx, fmt.Sprintf(`SELECT job, block FROM %s.log_terms WHERE %s
		GROUP BY job, block HAVING uniqExact(term) = %d ORDER BY job, block LIMIT %d FORMAT RowBinary`,
		s.db, strings.Join(conds, " AND "), len(terms), 64*maxRanges), nil, readSettings(q.Timeout))
	if err != nil {
		return nil, false, err
	}
	covered := uint64(0)
	for r, n := (rowReader{b: out}), 0; r.more(); n++ {
		job, block := r.str(), r.u64()
		if r.err != nil {
			return nil, false, r.err
		}
		if n == 64*maxRanges-1 {
			return nil, false, nil // at the LIMIT: more may follow
		}
		from, to := block*blockLines+1, (block+1)*blockLines
		covered += blockLines
		if n := len(rs); n > 0 && rs[n-1].job == job && rs[n-1].to+mergeGap >= from {
			covered += from - rs[n-1].to - 1
			rs[n-1].to = to
			continue
		}
		if len(rs) == maxRanges || covered > maxCovered {
			return nil, false, nil
		}
		rs = append(rs, lineRange{job: job, from: from, to: to})
	}
	if covered > maxCovered {
		return nil, false, nil
	}
	return rs, true, nil
}

// maxRE2Pattern bounds the rewritten pattern sent to the server.
const maxRE2Pattern = 64 << 10

// search runs the search's statement: the lines of conds and pre (with
// the pattern's rewrite when match is set and there is one), newest
// first, one row per job and line (the highest fence), at most q.Scan.
//
// pre, the conditions on the text alone, is the statement's PREWHERE:
// the server reads the text column first and the other nine only for
// the granules where a line passed, which over 10 million lines made a
// search matching one line in a thousand 20% faster and one matching
// none three times faster (the pattern without a literal, which then
// goes there too). The primary key still narrows what is read by the
// conditions of both clauses (org, job and line ranges).
func (s *Store) search(ctx context.Context, q logs.Query, conds, pre []string, match bool) ([]byte, error) {
	if re, ok := re2Pattern(q.Pattern); match && ok && len(re) <= maxRE2Pattern {
		m := "match(text, " + quote(re) + ")"
		if len(pre) == 0 {
			pre = []string{m}
		} else {
			// After the literals: the pattern runs only on the lines
			// that hold them.
			conds = append(slices.Clip(conds), m)
		}
	}
	prewhere := ""
	if len(pre) > 0 {
		prewhere = " PREWHERE " + strings.Join(pre, " AND ")
	}
	set := readSettings(q.Timeout)
	set["max_result_bytes"] = strconv.Itoa(256 << 20)
	set["result_overflow_mode"] = "break"
	return s.c.do(ctx, fmt.Sprintf(`SELECT %s FROM %s.log_lines%s WHERE %s
		ORDER BY at_us DESC, job DESC, line DESC, fence DESC LIMIT 1 BY job, line LIMIT %d FORMAT RowBinary`,
		lineCols, s.db, prewhere, strings.Join(conds, " AND "), q.Scan), nil, set)
}
