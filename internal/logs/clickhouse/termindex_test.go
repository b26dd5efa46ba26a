package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/logs"
)

func openIndexTest(t *testing.T) *Store { return OpenTestStore(t) }

// indexCorpus is lines of every kind a search meets: cases, non-ASCII
// (folding and not), metacharacters, the Kelvin sign, lines across
// index blocks.
var indexCorpus = []string{
	"error: connect to 10.0.0.1:443 timeout after 30s",
	"ERROR: TIMEOUT shouting",
	"Error: Timeout mixed",
	"erreur: délai dépassé",
	"ÉCHEC de la compilation",
	"échec d'un test",
	"\u212Aelvin sign and kelvin",
	"ſtrange long s",
	"100% done [ok] (a+b)*c $HOME ^caret",
	"naïve café ☃ snowman 日本語のログ",
	"tab\there and \x1b[31mred\x1b[0m",
	"compiling src/module_0001/file.go (1 of 2000)",
	"",
	"ab",
	"timeouttimeout",
	"ti meout",
}

var indexPatterns = []string{
	`error: .*timeout`, `(?i)error: .*timeout`, `timeout`, `(?i)TIMEOUT`, `(?i)échec d`, `ÉCHEC`,
	`(?i)kelvin`, `(?i)strange`, `100% done`, `\[ok\] \(a\+b\)\*c`, `\$HOME`, `☃ snowman`, `日本語`,
	`\x1b\[31mred`, `module_0001/file\.go`, `file\.go \(1[0-9]* of`, `line 1500: `, `(?i)LINE 1025:`,
	`secret-b`, `^ab$`, `(?i)naïve CAFÉ`, `x{0}tim`, `(?:timeout){2}`, `ti meout|nothing`,
}

// The index path and the scan path return the same results over a
// varied corpus, for patterns the index serves: a line the index
// dropped (or one it added) fails it. Another org's lines are never
// candidates.
func TestIndexAgreesWithScan(t *testing.T) {
	s := openIndexTest(t)
	ctx := context.Background()
	t0 := time.Now().Add(-10 * time.Minute).UTC().Truncate(time.Microsecond)
	// Each job's lines in writes of 1,500 (so blocks get rows from several
	// writes, and termIndex leaves out what it wrote); job 2's first write
	// a day earlier (a block over two days).
	var all []logs.Line
	for _, org := range []string{"org_a", "org_b"} {
		for j := 0; j < 3; j++ {
			job := fmt.Sprintf("%s_job_%d", org, j)
			n := 9000 // three index blocks
			var st logs.State
			for from := 1; from <= n; from += 1500 {
				w := logs.Write{Org: org, Job: job, Prev: st.Version}
				for i := from; i < from+1500 && i <= n; i++ {
					text := fmt.Sprintf("%s line %d: %s", job, i, indexCorpus[(i*7+j)%len(indexCorpus)])
					if org == "org_b" {
						text += " secret-b"
					}
					at := t0.Add(time.Duration(i) * time.Millisecond)
					if j == 2 && i <= 1500 {
						at = at.Add(-30 * time.Hour)
					}
					w.Lines = append(w.Lines, logs.Line{Org: org, Job: job, N: int64(i), Fence: 1, Stream: logs.StreamOutput, At: at, Text: text})
				}
				st = logs.State{Version: st.Version + 1, Cursor: logs.Cursor{Fence: 1, Seq: st.Cursor.Seq + 1}, Lines: st.Lines + int64(len(w.Lines))}
				w.State = st
				if errs, err := s.Write(ctx, []logs.Write{w}); err != nil || errs[0] != nil {
					t.Fatal(err, errs)
				}
				all = append(all, w.Lines...)
			}
		}
	}
	for _, p := range indexPatterns {
		for _, params := range []logs.SearchParams{
			{Pattern: p, Limit: 1000},
			{Pattern: p, Limit: 5},
			{Pattern: p, Job: "org_a_job_1", Limit: 1000},
			{Pattern: p, Since: t0.Add(1100 * time.Millisecond), Until: t0.Add(1900 * time.Millisecond), Limit: 1000},
			{Pattern: p, Since: t0.Add(-48 * time.Hour), Limit: 1000},
			{Pattern: p, Since: t0.Add(-48 * time.Hour), Until: t0.Add(-time.Hour), Limit: 1000},
		} {
			if params.Since.IsZero() {
				params.Since = t0.Add(-time.Hour)
			}
			q, err := logs.NewQuery("org_a", params, t0.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			rs, ok, err := s.candidates(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if ok != (len(queryTerms(q)) > 0) {
				t.Errorf("%q: index used %v, want it used when there are literals", p, ok)
			}
			for _, r := range rs {
				if !strings.HasPrefix(r.job, "org_a_") {
					t.Errorf("%q: a candidate of another org: %+v", p, r)
				}
			}
			s.useIndex = true
			indexed, err := s.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			s.useIndex = false
			scanned, err := s.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(scanned, indexed); diff != "" {
				t.Errorf("%q %+v: index path differs from the scan (-scan +index):\n%s", p, params, diff)
			}
			want := 0
			re := regexp.MustCompile(p)
			for _, l := range all {
				if l.Org == "org_a" && (params.Job == "" || l.Job == params.Job) && !l.At.Before(q.Since) && l.At.Before(q.Until) && re.MatchString(l.Text) {
					want++
				}
			}
			got := 0
			for _, jc := range indexed.Jobs {
				got += jc.Matches
			}
			if got != want {
				t.Errorf("%q %+v: %d matches, want %d", p, params, got, want)
			}
		}
	}
}

// Lines stored before log_terms existed are not in it: a search that
// reaches back before it scans, and finds them.
func TestIndexFromOlderLines(t *testing.T) {
	s := openIndexTest(t)
	ctx := context.Background()
	t0 := time.Now().Add(-10 * time.Minute).UTC()
	w := logs.Write{Org: "org_a", Job: "old", State: logs.State{Version: 1, Cursor: logs.Cursor{Fence: 1}, Lines: 1},
		Lines: []logs.Line{{Org: "org_a", Job: "old", N: 1, Fence: 1, Stream: logs.StreamOutput, At: t0, Text: "needle from before"}}}
	if errs, err := s.Write(ctx, []logs.Write{w}); err != nil || errs[0] != nil {
		t.Fatal(err, errs)
	}
	// As a store of before the index: its table gone, opened again.
	if _, err := s.c.do(ctx, "DROP TABLE "+s.db+".log_terms", nil, nil); err != nil {
		t.Fatal(err)
	}
	dsn := strings.TrimRight(os.Getenv("NIMBUS_TEST_CLICKHOUSE"), "/") + "/" + s.db
	s2, err := Open(ctx, dsn, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s2.indexFrom <= t0.UnixMicro() {
		t.Fatalf("indexFrom %d, want after the old line %d", s2.indexFrom, t0.UnixMicro())
	}
	q, err := logs.NewQuery("org_a", logs.SearchParams{Pattern: "needle", Since: t0.Add(-time.Hour)}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	res, err := s2.Search(ctx, q)
	if err != nil || len(res.Lines) != 1 {
		t.Fatalf("%+v, %v: want the old line", res, err)
	}
}

// FuzzTrigrams: a text holding a literal (up to ASCII case) holds every
// trigram of it.
func FuzzTrigrams(f *testing.F) {
	f.Add("Error: TIMEOUT after 30s", "timeout")
	f.Add("échec d'un test", "chec d")
	f.Add("ab", "abc")
	f.Fuzz(func(t *testing.T, text, lit string) {
		if !strings.Contains(lowerBytes(text), lowerBytes(lit)) {
			return
		}
		have := map[uint32]bool{}
		trigrams(text, func(x uint32) { have[x] = true })
		trigrams(lit, func(x uint32) {
			if !have[x] {
				t.Fatalf("%q holds %q but not its trigram %06x", text, lit, x)
			}
		})
		ts := termSets.Get().(*termSet)
		defer termSets.Put(ts)
		ts.addText(text)
		for _, x := range ts.set {
			if !have[x] {
				t.Fatalf("termSet has %06x, not a trigram of %q", x, text)
			}
		}
		if len(ts.set) != len(have) {
			t.Fatalf("termSet has %d trigrams, want %d", len(ts.set), len(have))
		}
		ts.reset()
		for _, w := range ts.bits {
			if w != 0 {
				t.Fatal("termSet not cleared")
			}
		}
	})
}

func lowerBytes(s string) string {
	b := []byte(s)
	for i := range b {
		b[i] = lowerASCII(b[i])
	}
	return string(b)
}

// BenchmarkTermRows: the index rows of a write of 1,000 lines of a job,
// as ingest makes them.
func BenchmarkTermRows(b *testing.B) {
	var lines []logs.Line
	for i := 0; i < 1000; i++ {
		lines = append(lines, logs.Line{Org: "org_a", Job: "job_1", N: int64(i + 1), At: time.Now(),
			Text: fmt.Sprintf("job 7 line %d: compiling src/module_%04d/file.go (%d of 100000)", i, i%9999, i)})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var w rowWriter
		var x termIndex
		writeTermRows(&w, x.rows(lines, nil))
	}
	b.ReportMetric(float64(b.N*len(lines))/b.Elapsed().Seconds(), "lines/s")
}

// A literal in more blocks than the index serves well (over maxRanges
// ranges) is not looked up: the search scans, and finds every line.
func TestIndexNotSelectiveScans(t *testing.T) {
	s := openIndexTest(t)
	ctx := context.Background()
	t0 := time.Now().Add(-10 * time.Minute).UTC()
	var ws []logs.Write
	for j := 0; j <= maxRanges; j++ {
		job := fmt.Sprintf("job_%03d", j)
		ws = append(ws, logs.Write{Org: "org_a", Job: job, State: logs.State{Version: 1, Cursor: logs.Cursor{Fence: 1}, Lines: 1},
			Lines: []logs.Line{{Org: "org_a", Job: job, N: 1, Fence: 1, Stream: logs.StreamOutput, At: t0, Text: "a needle here"}}})
	}
	if _, err := s.Write(ctx, ws); err != nil {
		t.Fatal(err)
	}
	q, err := logs.NewQuery("org_a", logs.SearchParams{Pattern: "needle", Since: t0.Add(-time.Hour), Limit: 1000}, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.candidates(ctx, q); err != nil || ok {
		t.Fatalf("candidates: ok %v, %v; want not served by the index", ok, err)
	}
	res, err := s.Search(ctx, q)
	if err != nil || len(res.Lines) != maxRanges+1 {
		t.Fatalf("%d lines, %v; want %d", len(res.Lines), err, maxRanges+1)
	}
}

// The server's errors that a search maps, as the server says them (18.16
// gives a code, not a name): a statement past its time bound is the
// search's deadline (a 503 to the user, not a 500), and a pattern it
// cannot compile is filtered in Go (TestSearchPatternTheServerRefuses).
func TestServerErrorsRecognised(t *testing.T) {
	s := OpenTestStore(t)
	_, err := s.c.do(context.Background(), `SELECT count() FROM system.numbers WHERE sipHash64(number) = 1`, nil, readSettings(time.Second))
	if err == nil {
		t.Fatal("a scan of system.numbers ended within its second")
	}
	if err := searchErr(err); err != context.DeadlineExceeded {
		t.Errorf("past max_execution_time: %v, want context.DeadlineExceeded", err)
	}
	_, err = s.c.do(context.Background(), `SELECT match('x', '(((x)')`, nil, readSettings(time.Second))
	var ce *Error
	if !errors.As(err, &ce) || !cannotCompile(ce.Message) {
		t.Errorf("a pattern the server cannot compile: %v", err)
	}
}

// BenchmarkWriteRows: the rows of a batch of 13 writes of 7,500 lines (a
// 512 KiB upload each, as the bench's agents send), index rows included.
func BenchmarkWriteRows(b *testing.B) {
	at := time.Now()
	var ws []logs.Write
	for j := range 13 {
		job := fmt.Sprintf("job_%d", j)
		w := logs.Write{Org: "org_a", Job: job, State: logs.State{Version: 1, Lines: 7500}}
		var data []byte
		for i := range 7500 {
			text := fmt.Sprintf("job %d line %d: compiling src/module_%04d/file.go (%d of 10000)", j, i, i%9999, i)
			w.Lines = append(w.Lines, logs.Line{Org: "org_a", Job: job, N: int64(i + 1), Fence: 1, Seq: int64(i / 900),
				Stream: logs.StreamOutput, At: at, Text: text})
			data = append(append(data, text...), '\n')
		}
		for len(data) > 0 {
			n := min(64<<10, len(data))
			w.Chunks = append(w.Chunks, logs.Chunk{Org: "org_a", Job: job, Fence: 1, Seq: int64(len(w.Chunks)), Data: data[:n], At: at})
			data = data[n:]
		}
		ws = append(ws, w)
	}
	versions := map[[2]string]int64{}
	b.ReportAllocs()
	for b.Loop() {
		encodeWrites(ws, versions, make([]error, len(ws)), &termIndex{})
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*13*7500), "ns/line")
}
