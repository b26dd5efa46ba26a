package sqlstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/logs/logstest"
	"github.com/nimbus-build/nimbus/internal/store/sqlstore"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
	"github.com/nimbus-build/nimbus/internal/testenv"
)

// writeLines stores n lines of a new job of org in one write: every
// fourth says "error: disk TIMEOUT", the others "compiling". Line i is
// written at i seconds.
func writeLines(t *testing.T, db *sqlstore.DB, org string, n int) string {
	t.Helper()
	job := storetest.NewJob(t, db, org)
	w := logs.Write{Org: org, Job: job, State: logs.State{Version: 1, Cursor: logs.Cursor{Fence: 1, Seq: 0}, Lines: int64(n)}}
	for i := 1; i <= n; i++ {
		text := fmt.Sprintf("line %d: compiling", i)
		if i%4 == 0 {
			text = fmt.Sprintf("line %d: error: disk TIMEOUT", i)
		}
		w.Lines = append(w.Lines, logs.Line{Org: org, Job: job, N: int64(i), Fence: 1, Step: "build", Stream: "stdout",
			At: time.Unix(int64(i), 0), Text: text})
	}
	errs, err := db.Logs().Write(context.Background(), []logs.Write{w})
	if err != nil || errs[0] != nil {
		t.Fatalf("write: %v %v", err, errs)
	}
	return job
}

func searchLines(t *testing.T, db *sqlstore.DB, org, pattern string) []int64 {
	t.Helper()
	q, err := logs.NewQuery(org, logs.SearchParams{Pattern: pattern, Since: time.Unix(0, 0), Until: time.Unix(1000, 0)}, time.Unix(1000, 0))
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.Logs().Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	var ns []int64
	for _, ln := range res.Lines {
		ns = append(ns, ln.N)
	}
	return ns
}

// A search finds the lines written but not yet in SQLite's trigram index
// (the indexer runs behind the writer), as well as those indexed.
func TestSearchSeesLinesNotYetIndexed(t *testing.T) {
	ctx := context.Background()
	db, err := sqlstore.OpenWithoutLogIndexer(ctx, storetest.DSN(t, "sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	writeLines(t, db, "org_a", 20)
	want := []int64{20, 16, 12, 8, 4}
	for _, indexed := range []int{0, 8, 20} {
		if indexed > 0 {
			if _, err := db.IndexLogs(ctx, 8); err != nil {
				t.Fatal(err)
			}
			if indexed == 20 {
				if _, err := db.IndexLogs(ctx, 100); err != nil {
					t.Fatal(err)
				}
			}
		}
		// An exact literal, one up to case, and a second literal.
		for _, pattern := range []string{`disk TIMEOUT`, `(?i)Disk timeout`, `error: .* TIMEOUT`} {
			if got := searchLines(t, db, "org_a", pattern); !slices.Equal(got, want) {
				t.Errorf("%d lines indexed, search %q: lines %v, want %v", indexed, pattern, got, want)
			}
		}
	}
}

// The indexer's mark is persisted with the lines it indexed: after a
// restart, the indexer (started by Open) goes on from it, and indexes
// each line once.
func TestLogIndexerResumesAfterRestart(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.DSN(t, "sqlite")
	db, err := sqlstore.OpenWithoutLogIndexer(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, db, "org_a", 40)
	if n, err := db.IndexLogs(ctx, 12); err != nil || n != 12 {
		t.Fatalf("index 12 lines: %d, %v", n, err)
	}
	db.Close()

	db, err = sqlstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	lag := func() int64 {
		n, err := db.QueryIntForTest(ctx, `SELECT (SELECT MAX(id) FROM log_lines) - (SELECT indexed FROM log_lines_fts_mark)`)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Not a timing: the indexer starts on its first tick, a fraction of
	// a second after Open.
	for deadline := time.Now().Add(time.Minute); lag() > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after a restart the indexer left %d lines unindexed", lag())
		}
	}
	if n, err := db.QueryIntForTest(ctx, `SELECT COUNT(*) FROM log_lines_fts WHERE text GLOB '*disk TIMEOUT*'`); err != nil || n != 10 {
		t.Errorf("the index finds %d lines holding the literal (%v), want 10", n, err)
	}
	if err := db.ExecForTest(ctx, `INSERT INTO log_lines_fts (log_lines_fts, rank) VALUES ('integrity-check', 1)`); err != nil {
		t.Errorf("the index does not match the lines: %v", err)
	}
}

// Migration 14 keeps what the index held before it: the mark starts past
// the lines stored, and lines written after it are found too (before and
// after they are indexed).
func TestMigrateLogSearchDeferred(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.DSN(t, "sqlite")
	db, err := sqlstore.OpenAtVersion(ctx, dsn, 13)
	if err != nil {
		t.Fatal(err)
	}
	writeLines(t, db, "org_a", 8)
	db.Close()
	db, err = sqlstore.OpenWithoutLogIndexer(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n, err := db.QueryIntForTest(ctx, `SELECT indexed FROM log_lines_fts_mark`); err != nil || n != 8 {
		t.Fatalf("mark after migrating: %d, %v; want 8", n, err)
	}
	writeLines(t, db, "org_a", 8)
	if n, err := db.QueryIntForTest(ctx, `SELECT COUNT(*) FROM log_lines_fts WHERE text GLOB '*TIMEOUT*'`); err != nil || n != 2 {
		t.Fatalf("the index holds %d lines with the literal (%v); want the 2 from before the migration", n, err)
	}
	check := func() {
		t.Helper()
		got := searchLines(t, db, "org_a", `disk TIMEOUT`)
		if want := []int64{8, 8, 4, 4}; !slices.Equal(got, want) {
			t.Errorf("search: lines %v, want %v", got, want)
		}
	}
	check()
	if n, err := db.IndexLogs(ctx, 100); err != nil || n != 8 {
		t.Fatalf("index: %d, %v; want the 8 lines written after the migration", n, err)
	}
	check()
	if err := db.ExecForTest(ctx, `INSERT INTO log_lines_fts (log_lines_fts, rank) VALUES ('integrity-check', 1)`); err != nil {
		t.Errorf("the index does not match the lines: %v", err)
	}
}

// The conformance suite with SQLite's index never brought up to date:
// every search reads the lines past the mark.
func TestLogsConformanceUnindexed(t *testing.T) {
	logstest.Run(t, func(t *testing.T) logstest.Env {
		db, err := sqlstore.OpenWithoutLogIndexer(context.Background(), storetest.DSN(t, "sqlite"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return logstest.Env{Store: db.Logs(), NewJob: func(t *testing.T, org string) string { return storetest.NewJob(t, db, org) }}
	})
}

// SQLite gives a new line the highest id plus one: after the newest
// indexed lines are deleted, their ids come again, and the lines that get
// them are found (the mark came down) and indexed once.
func TestLogIndexAfterNewestLinesDeleted(t *testing.T) {
	ctx := context.Background()
	db, err := sqlstore.OpenWithoutLogIndexer(ctx, storetest.DSN(t, "sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	writeLines(t, db, "org_a", 12)
	if n, err := db.IndexLogs(ctx, 100); err != nil || n != 12 {
		t.Fatalf("index: %d, %v", n, err)
	}
	if err := db.ExecForTest(ctx, `DELETE FROM log_lines WHERE id > 6`); err != nil {
		t.Fatal(err)
	}
	writeLines(t, db, "org_b", 8)
	if got, want := searchLines(t, db, "org_b", `disk TIMEOUT`), []int64{8, 4}; !slices.Equal(got, want) {
		t.Errorf("before indexing: lines %v, want %v", got, want)
	}
	if n, err := db.IndexLogs(ctx, 100); err != nil || n != 8 {
		t.Fatalf("index: %d, %v; want the 8 new lines", n, err)
	}
	if got, want := searchLines(t, db, "org_b", `disk TIMEOUT`), []int64{8, 4}; !slices.Equal(got, want) {
		t.Errorf("after indexing: lines %v, want %v", got, want)
	}
	if got, want := searchLines(t, db, "org_a", `disk TIMEOUT`), []int64{4}; !slices.Equal(got, want) {
		t.Errorf("the lines left of the first job: %v, want %v", got, want)
	}
	if err := db.ExecForTest(ctx, `INSERT INTO log_lines_fts (log_lines_fts, rank) VALUES ('integrity-check', 1)`); err != nil {
		t.Errorf("the index does not match the lines: %v", err)
	}
}

// An indexer that cannot bring the index up to date says so (once),
// rather than retrying in silence.
func TestLogIndexerFailureIsLogged(t *testing.T) {
	ctx := context.Background()
	var logs testenv.Buffer
	db, err := sqlstore.OpenWith(ctx, storetest.DSN(t, "sqlite"), sqlstore.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.ExecForTest(ctx, `DROP TABLE log_lines_fts`); err != nil {
		t.Fatal(err)
	}
	writeLines(t, db, "org_a", 10)
	// Not a timing: the indexer tries on its next tick.
	for deadline := time.Now().Add(time.Minute); !strings.Contains(logs.String(), "log search index is not brought up to date"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning from the failing indexer; logged: %q", logs.String())
		}
	}
	time.Sleep(300 * time.Millisecond) // a few more failing ticks
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings for one run of failures, want 1:\n%s", n, logs.String())
	}
}
