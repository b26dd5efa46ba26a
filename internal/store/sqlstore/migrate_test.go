package sqlstore_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/store/sqlstore"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

// Migration 6 moves each job's log usage out of the jobs table and gives
// every stored chunk its job's org; migration 10 turns the usage into the
// job's ingest state (its cursor at the last chunk stored): logs written
// before them read back, and the next chunk continues them.
func TestMigrateLogsToTheirOwnTables(t *testing.T) {
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			dsn := storetest.DSN(t, engine)
			db, err := sqlstore.OpenAtVersion(ctx, dsn, 5)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, q := range []string{
				`INSERT INTO orgs (id, name, created_at) VALUES ('org_a', 'a', 1)`,
				`INSERT INTO jobs (id, org_id, source, state, labels, spec, attempt, max_attempts, fence, agent_id, lease_expires_at,
					cancel_requested, runner_name, reason, created_by, created_at, not_before, updated_at, started_at, finished_at, log_bytes)
					VALUES ('job_1', 'org_a', 'api', 'succeeded', '[]', '{}', 0, 3, 1, '', 0, FALSE, '', '', 'test', 1, 1, 1, 1, 1, 5)`,
				`INSERT INTO log_chunks (job_id, fence, seq, data, created_at) VALUES ('job_1', 1, 0, 'hello', 1)`,
				`INSERT INTO log_chunks (job_id, fence, seq, data, created_at) VALUES ('job_1', 2, 0, 'again', 1)`,
				`INSERT INTO log_chunks (job_id, fence, seq, data, created_at) VALUES ('job_1', 2, 1, '!', 1)`,
			} {
				if err := db.ExecForTest(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if err := db.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			st, err := db.Logs().State(ctx, "org_a", "job_1")
			if err != nil || st.Used != 5 || st.Cursor != (logs.Cursor{Fence: 2, Seq: 1}) || st.Version != 1 || st.Lines != 0 {
				t.Errorf("after migrating: state %+v, %v; want 5 bytes used, the cursor at (2, 1)", st, err)
			}
			got, err := db.Logs().Read(ctx, "org_a", "job_1", logs.Start, 0)
			if err != nil || len(got) != 3 || string(got[0].Data) != "hello" {
				t.Errorf("after migrating: read %+v, %v", got, err)
			}
			if _, err := db.Jobs().Get(ctx, "job_1"); err != nil {
				t.Errorf("job after migrating: %v", err)
			}
		})
	}
}

// Migrations are numbered 1, 2, 3… with no number used twice: two
// branches that each add "the next" migration must be renumbered when they
// meet, and this says so before any database does.
func TestMigrationNumbersUnique(t *testing.T) {
	entries, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]string{}
	for _, e := range entries {
		n, err := strconv.Atoi(strings.SplitN(e.Name(), "_", 2)[0])
		if err != nil {
			t.Errorf("%s: name must start with its number", e.Name())
			continue
		}
		if other, ok := seen[n]; ok {
			t.Errorf("migration number %d is used twice: %s and %s", n, other, e.Name())
		}
		seen[n] = e.Name()
	}
	for i := 1; i <= len(seen); i++ {
		if _, ok := seen[i]; !ok {
			t.Errorf("migration %d is missing: numbers must run 1..%d", i, len(seen))
		}
	}
}

// Migration 13 rebuilds SQLite's search index with cheaper writes: lines
// stored before it are found by their literals after it, and lines
// written after it too.
func TestMigrateLogSearchIndex(t *testing.T) {
	ctx := context.Background()
	dsn := storetest.DSN(t, "sqlite")
	db, err := sqlstore.OpenAtVersion(ctx, dsn, 12)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`INSERT INTO orgs (id, name, created_at) VALUES ('org_a', 'a', 1)`,
		`INSERT INTO jobs (id, org_id, source, state, labels, spec, attempt, max_attempts, fence, agent_id, lease_expires_at,
			cancel_requested, runner_name, reason, created_by, created_at, not_before, updated_at, started_at, finished_at)
			VALUES ('job_1', 'org_a', 'api', 'succeeded', '[]', '{}', 0, 3, 1, '', 0, FALSE, '', '', 'test', 1, 1, 1, 1, 1)`,
		`INSERT INTO log_lines (job_id, org_id, line, repo, fence, seq, step, stream, created_at, text)
			VALUES ('job_1', 'org_a', 1, '', 1, 0, '', 'stdout', 1000000, 'before: connect timeout')`,
	} {
		if err := db.ExecForTest(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.ExecForTest(ctx, `INSERT INTO log_lines (job_id, org_id, line, repo, fence, seq, step, stream, created_at, text)
		VALUES ('job_1', 'org_a', 2, '', 1, 0, '', 'stdout', 2000000, 'after: read timeout')`); err != nil {
		t.Fatal(err)
	}
	for pattern, want := range map[string]int{`timeout`: 2, `before: conn`: 1, `(?i)AFTER: READ`: 1, `nothing`: 0} {
		q, err := logs.NewQuery("org_a", logs.SearchParams{Pattern: pattern, Since: time.UnixMicro(0), Until: time.UnixMicro(3000000)}, time.UnixMicro(3000000))
		if err != nil {
			t.Fatal(err)
		}
		res, err := db.Logs().Search(ctx, q)
		if err != nil || len(res.Lines) != want {
			t.Errorf("%s after migrating: %d lines, %v; want %d", pattern, len(res.Lines), err, want)
		}
	}
}
