// Package logstest is the conformance suite every logs.Store passes: the
// embedded SQL store on SQLite and PostgreSQL, and ClickHouse. It
// includes the org-isolation regression harness: every read path is
// tried with another org, with no org and with injection in its
// arguments.
package logstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/logs"
)

// Env is a store under test.
type Env struct {
	Store logs.Store
	// NewJob returns the id of a new job of org (creating the org when
	// the store needs one to exist).
	NewJob func(t *testing.T, org string) string
}

// Run runs the suite; open returns a new, empty store.
func Run(t *testing.T, open func(t *testing.T) Env) {
	tests := []struct {
		name string
		fn   func(t *testing.T, e Env)
	}{
		{"StateRoundTrip", testStateRoundTrip},
		{"Conflict", testConflict},
		{"ReadChunks", testReadChunks},
		{"Lines", testLines},
		{"BatchOfJobs", testBatchOfJobs},
		{"LargeWrite", testLargeWrite},
		{"Search", testSearch},
		{"SearchBounds", testSearchBounds},
		{"SearchHostileText", testSearchHostileText},
		{"OrgIsolation", testOrgIsolation},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// log builds a job's writes as the Service would: one chunk per call,
// holding lines (each ending in a newline), numbered on.
type log struct {
	org, job, repo string
	st             logs.State
	fence          int64
	at             time.Time
	step           string
}

func newLog(org, job string) *log {
	return &log{org: org, job: job, st: logs.State{Cursor: logs.Start}, fence: 1, at: t0}
}

// next makes the write of one chunk holding texts as lines.
func (l *log) next(texts ...string) logs.Write {
	w := logs.Write{Org: l.org, Job: l.job, Prev: l.st.Version}
	seq := int64(0)
	if l.st.Cursor.Fence == l.fence {
		seq = l.st.Cursor.Seq + 1
	}
	var data bytes.Buffer
	for _, s := range texts {
		data.WriteString(s + "\n")
		l.st.Lines++
		w.Lines = append(w.Lines, logs.Line{Org: l.org, Job: l.job, Repo: l.repo, N: l.st.Lines, Fence: l.fence, Seq: seq,
			Step: l.step, Stream: logs.StreamOutput, At: l.at, Text: s})
	}
	w.Chunks = []logs.Chunk{{Org: l.org, Job: l.job, Fence: l.fence, Seq: seq, Data: data.Bytes(), At: l.at}}
	l.st.Cursor = logs.Cursor{Fence: l.fence, Seq: seq}
	l.st.Used += int64(data.Len())
	l.st.Version++
	w.State = l.st
	return w
}

func writeOK(t *testing.T, e Env, ws ...logs.Write) {
	t.Helper()
	errs, err := e.Store.Write(context.Background(), ws)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("write %d (%s): %v", i, ws[i].Job, err)
		}
	}
}

func readAll(t *testing.T, e Env, org, job string) []logs.Chunk {
	t.Helper()
	var out []logs.Chunk
	after := logs.Start
	for {
		page, err := e.Store.Read(context.Background(), org, job, after, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		last := page[len(page)-1]
		after = logs.Cursor{Fence: last.Fence, Seq: last.Seq}
	}
}

func raw(cs []logs.Chunk) string {
	var b bytes.Buffer
	for _, c := range cs {
		b.Write(c.Data)
	}
	return b.String()
}

func allLines(t *testing.T, e Env, org, job string, q logs.LineQuery) []logs.Line {
	t.Helper()
	var out []logs.Line
	q.Limit = 3
	if q.From == 0 {
		q.From = 1
	}
	for {
		page, err := e.Store.Lines(context.Background(), org, job, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		q.From = page[len(page)-1].N + 1
	}
}

func texts(ls []logs.Line) []string {
	out := []string{}
	for _, l := range ls {
		out = append(out, l.Text)
	}
	return out
}

// A job's state is Start until written, then what the last write set,
// pending bytes (binary too), step and fullness included.
func testStateRoundTrip(t *testing.T, e Env) {
	ctx := context.Background()
	job := e.NewJob(t, "org_a")
	st, err := e.Store.State(ctx, "org_a", job)
	if err != nil || st.Cursor != logs.Start || st.Version != 0 || st.Used != 0 || st.Lines != 0 {
		t.Fatalf("state of a job without output: %+v, %v", st, err)
	}
	l := newLog("org_a", job)
	w := l.next("one")
	w.State.Pending = []byte{0, 0xff, 'p', 0x1b}
	w.State.Step = "Build ✓"
	writeOK(t, e, w)
	st, err = e.Store.State(ctx, "org_a", job)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(w.State, st); d != "" {
		t.Errorf("state (-want +got):\n%s", d)
	}
	l.st = w.State
	w2 := l.next("two")
	w2.State.Full, w2.State.Pending, w2.State.Step = true, nil, ""
	writeOK(t, e, w2)
	if st, err = e.Store.State(ctx, "org_a", job); err != nil || st.Version != 2 || !st.Full || len(st.Pending) != 0 || st.Lines != 2 {
		t.Errorf("state after the second write: %+v, %v", st, err)
	}
}

// A write applies only onto the version it was made from: written twice
// (a retried upload, another replica), it is kept once; a stale one
// changes nothing.
func testConflict(t *testing.T, e Env) {
	ctx := context.Background()
	job := e.NewJob(t, "org_a")
	l := newLog("org_a", job)
	w1 := l.next("a")
	writeOK(t, e, w1)
	errs, err := e.Store.Write(ctx, []logs.Write{w1})
	if err != nil || !errors.Is(errs[0], logs.ErrConflict) {
		t.Fatalf("the same write again: %v, %v; want ErrConflict", errs, err)
	}
	w2 := l.next("b")
	stale := w2
	stale.Prev = 0
	stale.State.Version = 1
	stale.Lines = []logs.Line{{Org: "org_a", Job: job, N: 1, Text: "forged"}}
	if errs, err := e.Store.Write(ctx, []logs.Write{stale}); err != nil || !errors.Is(errs[0], logs.ErrConflict) {
		t.Fatalf("a stale write: %v, %v; want ErrConflict", errs, err)
	}
	writeOK(t, e, w2)
	if errs, err := e.Store.Write(ctx, []logs.Write{w2}); err != nil || !errors.Is(errs[0], logs.ErrConflict) {
		t.Fatalf("the second write again: %v, %v", errs, err)
	}
	if got := texts(allLines(t, e, "org_a", job, logs.LineQuery{})); !cmp.Equal(got, []string{"a", "b"}) {
		t.Errorf("lines %q, want [a b]", got)
	}
	if got := raw(readAll(t, e, "org_a", job)); got != "a\nb\n" {
		t.Errorf("raw output %q", got)
	}
}

// Chunks read back after a cursor, in (fence, seq) order, byte for byte.
func testReadChunks(t *testing.T, e Env) {
	ctx := context.Background()
	job := e.NewJob(t, "org_a")
	l := newLog("org_a", job)
	writeOK(t, e, l.next("a"))
	writeOK(t, e, l.next("b"))
	l.fence = 3 // a later attempt
	w := l.next("c")
	bin := []byte{0, 0xff, 0xfe, '\r', 0x1b, '[', '1', 'm'}
	w.Chunks[0].Data = append(w.Chunks[0].Data, bin...)
	writeOK(t, e, w)
	got, err := e.Store.Read(ctx, "org_a", job, logs.Cursor{Fence: 1, Seq: 0}, 1)
	if err != nil || raw(got) != "b\n" || got[0].Fence != 1 || got[0].Seq != 1 || !got[0].At.Equal(t0) {
		t.Errorf("read after (1,0), limit 1: %+v, %v", got, err)
	}
	got, err = e.Store.Read(ctx, "org_a", job, logs.Cursor{Fence: 1, Seq: 1}, 0)
	if err != nil || len(got) != 1 || got[0].Fence != 3 || got[0].Seq != 0 || !bytes.Equal(got[0].Data, append([]byte("c\n"), bin...)) {
		t.Errorf("read after (1,1): %+v, %v", got, err)
	}
	if got, err := e.Store.Read(ctx, "org_a", job, logs.Cursor{Fence: 3, Seq: 0}, 0); err != nil || len(got) != 0 {
		t.Errorf("read after the end: %+v, %v", got, err)
	}
}

// Lines read back from a number, of one step or all, in order, with what
// they carry; text is kept as written (ANSI, unicode, tabs).
func testLines(t *testing.T, e Env) {
	ctx := context.Background()
	job := e.NewJob(t, "org_a")
	l := newLog("org_a", job)
	l.repo = "acme/web"
	writeOK(t, e, l.next("start", "\x1b[31mred\x1b[0m", "tab\tand ünïcødé ✓"))
	l.step = "Build"
	writeOK(t, e, l.next("::group::Build", "compiling", "::endgroup::"))
	l.step = ""
	l.at = t0.Add(time.Minute)
	writeOK(t, e, l.next("done"))
	all := allLines(t, e, "org_a", job, logs.LineQuery{})
	want := []string{"start", "\x1b[31mred\x1b[0m", "tab\tand ünïcødé ✓", "::group::Build", "compiling", "::endgroup::", "done"}
	if d := cmp.Diff(want, texts(all)); d != "" {
		t.Fatalf("lines (-want +got):\n%s", d)
	}
	for i, ln := range all {
		if ln.N != int64(i+1) || ln.Org != "org_a" || ln.Job != job || ln.Repo != "acme/web" || ln.Stream != logs.StreamOutput || ln.Fence != 1 {
			t.Errorf("line %d: %+v", i+1, ln)
		}
	}
	if all[6].Seq != 2 || !all[6].At.Equal(t0.Add(time.Minute)) || all[0].Seq != 0 {
		t.Errorf("chunk and time of lines: %+v, %+v", all[0], all[6])
	}
	if got := texts(allLines(t, e, "org_a", job, logs.LineQuery{From: 5})); !cmp.Equal(got, want[4:]) {
		t.Errorf("from line 5: %q", got)
	}
	if got := texts(allLines(t, e, "org_a", job, logs.LineQuery{Step: "Build"})); !cmp.Equal(got, want[3:6]) {
		t.Errorf("step Build: %q", got)
	}
	if got, err := e.Store.Lines(ctx, "org_a", job, logs.LineQuery{From: 2, Limit: 2}); err != nil || !cmp.Equal(texts(got), want[1:3]) {
		t.Errorf("from 2, limit 2: %q, %v", texts(got), err)
	}
	if got, err := e.Store.Lines(ctx, "org_a", job, logs.LineQuery{From: 8}); err != nil || len(got) != 0 {
		t.Errorf("after the last line: %q, %v", texts(got), err)
	}
}

// One Write call may carry several jobs' writes of several orgs (a
// batching ingest); a conflicting one does not hold the others back.
func testBatchOfJobs(t *testing.T, e Env) {
	ctx := context.Background()
	a, b := e.NewJob(t, "org_a"), e.NewJob(t, "org_a")
	c := e.NewJob(t, "org_b")
	la, lb, lc := newLog("org_a", a), newLog("org_a", b), newLog("org_b", c)
	writeOK(t, e, la.next("a0"), lb.next("b0"), lc.next("c0"))
	stale := lb.next("b1")
	stale.Prev = 0
	errs, err := e.Store.Write(ctx, []logs.Write{la.next("a1"), stale, lc.next("c1")})
	if err != nil || errs[0] != nil || !errors.Is(errs[1], logs.ErrConflict) || errs[2] != nil {
		t.Fatalf("batch with a stale write: %v, %v", errs, err)
	}
	for _, tc := range []struct {
		org, job string
		want     []string
	}{{"org_a", a, []string{"a0", "a1"}}, {"org_a", b, []string{"b0"}}, {"org_b", c, []string{"c0", "c1"}}} {
		if got := texts(allLines(t, e, tc.org, tc.job, logs.LineQuery{})); !cmp.Equal(got, tc.want) {
			t.Errorf("job %s: %q, want %q", tc.job, got, tc.want)
		}
	}
}

// A write larger than one statement's worth keeps every line and chunk.
func testLargeWrite(t *testing.T, e Env) {
	job := e.NewJob(t, "org_a")
	l := newLog("org_a", job)
	var lines []string
	for i := range 1234 {
		lines = append(lines, fmt.Sprintf("line %d", i))
	}
	w := l.next(lines...)
	for range 700 {
		more := l.next("x")
		w.Chunks = append(w.Chunks, more.Chunks...)
		w.Lines = append(w.Lines, more.Lines...)
	}
	w.State = l.st
	writeOK(t, e, w)
	got := allLines(t, e, "org_a", job, logs.LineQuery{})
	if len(got) != 1934 || got[1233].Text != "line 1233" || got[1933].N != 1934 {
		t.Errorf("%d lines", len(got))
	}
	if n := len(readAll(t, e, "org_a", job)); n != 701 {
		t.Errorf("%d chunks, want 701", n)
	}
}

func search(t *testing.T, e Env, org string, p logs.SearchParams) logs.Result {
	t.Helper()
	q, err := logs.NewQuery(org, p, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Store.Search(context.Background(), q)
	if err != nil {
		t.Fatalf("search %q: %v", p.Pattern, err)
	}
	return res
}

type hit struct {
	Job  string
	N    int64
	Text string
}

func hits(r logs.Result) []hit {
	out := []hit{}
	for _, l := range r.Lines {
		out = append(out, hit{l.Job, l.N, l.Text})
	}
	return out
}

// Search finds the lines matching a regular expression across the org's
// jobs, newest first, with counts per job; repository, job and time
// range narrow it.
func testSearch(t *testing.T, e Env) {
	web1, web2, api := e.NewJob(t, "org_a"), e.NewJob(t, "org_a"), e.NewJob(t, "org_a")
	l1, l2, l3 := newLog("org_a", web1), newLog("org_a", web2), newLog("org_a", api)
	l1.repo, l2.repo, l3.repo = "acme/web", "acme/web", "acme/api"
	l1.at, l2.at, l3.at = t0, t0.Add(10*time.Minute), t0.Add(20*time.Minute)
	writeOK(t, e, l1.next("ok", "error: connect timeout after 3s", "error: refused"),
		l2.next("error: read timeout", "fine", "ERROR: TIMEOUT shouting"),
		l3.next("error: dns timeout", "error: slow timeout"))
	res := search(t, e, "org_a", logs.SearchParams{Pattern: `error: .*timeout`, Since: t0.Add(-time.Hour)})
	want := []hit{{api, 2, "error: slow timeout"}, {api, 1, "error: dns timeout"}, {web2, 1, "error: read timeout"}, {web1, 2, "error: connect timeout after 3s"}}
	if d := cmp.Diff(want, hits(res)); d != "" {
		t.Errorf("matches (-want +got):\n%s", d)
	}
	jobs := []logs.JobCount{}
	for _, j := range res.Jobs {
		jobs = append(jobs, logs.JobCount{Job: j.Job, Repo: j.Repo, Matches: j.Matches})
	}
	wantJobs := []logs.JobCount{{Job: api, Repo: "acme/api", Matches: 2}, {Job: web2, Repo: "acme/web", Matches: 1}, {Job: web1, Repo: "acme/web", Matches: 1}}
	if d := cmp.Diff(wantJobs, jobs); d != "" || res.Partial {
		t.Errorf("counts per job (-want +got):\n%s (partial %v)", d, res.Partial)
	}
	if got := hits(search(t, e, "org_a", logs.SearchParams{Pattern: `(?i)error: .*timeout`, Repo: "acme/web", Since: t0.Add(-time.Hour)})); len(got) != 3 || got[0].Text != "ERROR: TIMEOUT shouting" {
		t.Errorf("case-insensitive in acme/web: %+v", got)
	}
	if got := hits(search(t, e, "org_a", logs.SearchParams{Pattern: `timeout`, Job: web1, Since: t0.Add(-time.Hour)})); len(got) != 1 || got[0].Job != web1 {
		t.Errorf("one job: %+v", got)
	}
	if got := hits(search(t, e, "org_a", logs.SearchParams{Pattern: `timeout`, Since: t0.Add(5 * time.Minute), Until: t0.Add(15 * time.Minute)})); len(got) != 1 || got[0].Job != web2 {
		t.Errorf("time range: %+v", got)
	}
	if got := hits(search(t, e, "org_a", logs.SearchParams{Pattern: `timeout`, Since: t0.Add(-time.Hour), Limit: 2})); len(got) != 2 || got[0].Job != api {
		t.Errorf("limit 2: %+v", got)
	}
	if got := hits(search(t, e, "org_a", logs.SearchParams{Pattern: `^ok$|^fine$`, Since: t0.Add(-time.Hour)})); len(got) != 2 {
		t.Errorf("a pattern without literals: %+v", got)
	}
	if got := search(t, e, "org_a", logs.SearchParams{Pattern: `nothing like this`, Since: t0.Add(-time.Hour)}); len(got.Lines) != 0 || len(got.Jobs) != 0 {
		t.Errorf("no match: %+v", got)
	}
	// Case folding beyond ASCII, with no literal for an index to use
	// (ClickHouse's own (?i) misses it: a store must not trust it).
	fr := e.NewJob(t, "org_a")
	lf := newLog("org_a", fr)
	lf.at = t0
	writeOK(t, e, lf.next("échec du délai", "ÉCHEC DU DÉLAI", "Echec", "K kelvin"))
	if got := hits(search(t, e, "org_a", logs.SearchParams{Pattern: `(?i)échec d`, Job: fr, Since: t0.Add(-time.Hour)})); len(got) != 2 {
		t.Errorf("case-insensitive beyond ASCII: %+v", got)
	}
	if got := hits(search(t, e, "org_a", logs.SearchParams{Pattern: `^(?i)k`, Job: fr, Since: t0.Add(-time.Hour)})); len(got) != 1 {
		t.Errorf("the Kelvin sign folds to k: %+v", got)
	}
}

// The scan bound ends a search early and says so.
func testSearchBounds(t *testing.T, e Env) {
	job := e.NewJob(t, "org_a")
	l := newLog("org_a", job)
	var lines []string
	for i := range 50 {
		lines = append(lines, fmt.Sprintf("step %d failed", i))
	}
	writeOK(t, e, l.next(lines...))
	q, err := logs.NewQuery("org_a", logs.SearchParams{Pattern: "failed", Since: t0.Add(-time.Hour)}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	q.Scan = 10
	res, err := e.Store.Search(context.Background(), q)
	if err != nil || !res.Partial || len(res.Lines) > 10 || len(res.Lines) == 0 {
		t.Errorf("search scanning at most 10 lines: %d lines, partial %v, %v", len(res.Lines), res.Partial, err)
	}
	q.Scan = logs.DefaultScan
	res, err = e.Store.Search(context.Background(), q)
	if err != nil || res.Partial || len(res.Lines) != 50 || res.Jobs[0].Matches != 50 || res.Lines[0].N != 50 {
		t.Errorf("whole search: %d lines, partial %v, %+v, %v", len(res.Lines), res.Partial, res.Jobs, err)
	}
	// An old match behind many newer lines, with no literal for an
	// index: a store bounds what it examines (and says so) or finds it.
	// Never neither: a result that is not partial holds every match.
	hay := e.NewJob(t, "org_a")
	lh := newLog("org_a", hay)
	lh.at = t0.Add(-30 * time.Minute)
	writeOK(t, e, lh.next("needle"))
	lh.at = t0
	writeOK(t, e, lh.next(lines...))
	q, err = logs.NewQuery("org_a", logs.SearchParams{Pattern: `^ne.dl.$`, Job: hay, Since: t0.Add(-time.Hour)}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	q.Scan = 10
	res, err = e.Store.Search(context.Background(), q)
	if found := len(res.Lines) == 1 && res.Lines[0].Text == "needle"; err != nil || found == res.Partial {
		t.Errorf("a match behind the scan bound: %d lines, partial %v, %v; want the match or partial", len(res.Lines), res.Partial, err)
	}
}

// Hostile text and patterns: quotes, backslashes, the stores' wildcard
// and escape characters, regular expression metacharacters, NUL and
// unicode are data, found exactly, never syntax.
func testSearchHostileText(t *testing.T, e Env) {
	job := e.NewJob(t, "org_a")
	l := newLog("org_a", job)
	nasty := []string{
		`it's 100% done_ok`,
		`back\slash \' \" \\x00 \x27`,
		`glob *?[a-z] and like %_ \%`,
		`sql '); DROP TABLE log_lines; -- `,
		`clickhouse ' || '' FORMAT TSV \N`,
		"unicode ✓ naïve 日本語 \u202e",
		`regex (a+)+$ [^]] {1,2}`,
	}
	writeOK(t, e, l.next(nasty...))
	for _, s := range nasty {
		pattern := quoteMeta(s)
		got := hits(search(t, e, "org_a", logs.SearchParams{Pattern: pattern, Since: t0.Add(-time.Hour)}))
		if len(got) != 1 || got[0].Text != s {
			t.Errorf("search for %q (%q): %+v", s, pattern, got)
		}
	}
	for _, p := range []string{`%`, `_`, `\*`, `[*?]`, `'`, `\\`, `\x00`, `.*' OR 1=1 --`, strings.Repeat("a", logs.MaxPattern)} {
		q, err := logs.NewQuery("org_a", logs.SearchParams{Pattern: p, Since: t0.Add(-time.Hour)}, t0.Add(time.Hour))
		if err != nil {
			t.Errorf("pattern %q: %v", p, err)
			continue
		}
		if _, err := e.Store.Search(context.Background(), q); err != nil {
			t.Errorf("pattern %q: %v", p, err)
		}
	}
	if got := hits(search(t, e, "org_a", logs.SearchParams{Pattern: `%`, Since: t0.Add(-time.Hour)})); len(got) != 2 {
		t.Errorf("a literal %%: %+v", got)
	}
}

func quoteMeta(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.+*?()|[]{}^$`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// The org-isolation regression harness: through every read path another
// org sees nothing of a job, a read without an org is refused, and
// injection in the org, job or search arguments reaches nothing.
func testOrgIsolation(t *testing.T, e Env) {
	ctx := context.Background()
	job := e.NewJob(t, "org_a")
	e.NewJob(t, "org_b")
	l := newLog("org_a", job)
	l.repo = "acme/secret"
	writeOK(t, e, l.next("the secret of org a", "token=hunter2"))
	attackers := []string{"org_b", "org_a' OR '1'='1", "org_a\x00", "ORG_A", "org_a ", "%", "*", `org_a\`, "' OR 1=1 --"}
	jobs := []string{job, job + "' OR '1'='1", "%", "*", job + "\x00"}
	for _, org := range attackers {
		for _, j := range jobs {
			if st, err := e.Store.State(ctx, org, j); err != nil || st.Version != 0 || st.Used != 0 {
				t.Errorf("State(%q, %q): %+v, %v", org, j, st, err)
			}
			if got, err := e.Store.Read(ctx, org, j, logs.Start, 0); err != nil || len(got) != 0 {
				t.Errorf("Read(%q, %q): %q, %v", org, j, raw(got), err)
			}
			if got, err := e.Store.Lines(ctx, org, j, logs.LineQuery{From: 1}); err != nil || len(got) != 0 {
				t.Errorf("Lines(%q, %q): %q, %v", org, j, texts(got), err)
			}
		}
		for _, p := range []logs.SearchParams{{Pattern: "."}, {Pattern: "secret", Repo: "acme/secret"}, {Pattern: "hunter2", Job: job}} {
			p.Since = t0.Add(-time.Hour)
			if res := search(t, e, org, p); len(res.Lines) != 0 || len(res.Jobs) != 0 {
				t.Errorf("Search as %q for %q: %+v", org, p.Pattern, res)
			}
		}
	}
	// Writes to another org's job are not a way in either: they are
	// keyed by the job, and the state is org a's.
	lb := newLog("org_b", job)
	if errs, err := e.Store.Write(ctx, []logs.Write{lb.next("injected")}); err == nil && errs[0] == nil {
		if got := texts(allLines(t, e, "org_a", job, logs.LineQuery{})); !cmp.Equal(got, []string{"the secret of org a", "token=hunter2"}) {
			t.Errorf("org a's lines after org b wrote to its job: %q", got)
		}
	}
	for name, fn := range map[string]func() error{
		"State": func() error { _, err := e.Store.State(ctx, "", job); return err },
		"Read":  func() error { _, err := e.Store.Read(ctx, "", job, logs.Start, 0); return err },
		"Lines": func() error { _, err := e.Store.Lines(ctx, "", job, logs.LineQuery{From: 1}); return err },
		"Search": func() error {
			_, err := e.Store.Search(ctx, logs.Query{Pattern: ".", Since: t0.Add(-time.Hour), Until: t0.Add(time.Hour), Limit: 10, Scan: 10})
			return err
		},
		"Write": func() error {
			w := newLog("", job).next("x")
			_, err := e.Store.Write(ctx, []logs.Write{w})
			return err
		},
	} {
		if err := fn(); !errors.Is(err, logs.ErrNoScope) {
			t.Errorf("%s without an org: %v, want ErrNoScope", name, err)
		}
	}
	if res := search(t, e, "org_a", logs.SearchParams{Pattern: "secret", Since: t0.Add(-time.Hour)}); len(res.Lines) != 1 {
		t.Errorf("org a's own search: %+v", res)
	}
}
