package sqlstore

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// dialect is the seam between the two engines: the few words and clauses
// they spell differently. Everything else is shared SQL with $N parameters,
// which both engines accept.
type dialect struct {
	name string
	// words replaces {{word}} in migrations.
	words map[string]string
	// forUpdate locks selected rows until the transaction ends; skipLocked
	// also skips rows other transactions hold. SQLite has one writer at a
	// time, so it needs neither.
	forUpdate  string
	skipLocked string
}

var (
	sqliteDialect = dialect{
		name: "sqlite",
		words: map[string]string{
			"bytes":       "BLOB",
			"serial":      "INTEGER PRIMARY KEY AUTOINCREMENT",
			"rowid":       "INTEGER PRIMARY KEY",
			"empty_bytes": "X''",
			// Trigrams index every substring of three or more bytes: the
			// literals of a search's pattern find their candidate lines.
			"log_search": `CREATE VIRTUAL TABLE log_lines_fts USING fts5(text, content='log_lines', content_rowid='id',
    tokenize='trigram', detail='none');
CREATE TRIGGER log_lines_fts_insert AFTER INSERT ON log_lines BEGIN
    INSERT INTO log_lines_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER log_lines_fts_delete AFTER DELETE ON log_lines BEGIN
    INSERT INTO log_lines_fts (log_lines_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;`,
			"log_search_v2": `DROP TABLE log_lines_fts;
CREATE VIRTUAL TABLE log_lines_fts USING fts5(text, content='log_lines', content_rowid='id',
    tokenize='trigram', detail='none', columnsize=0);
INSERT INTO log_lines_fts (log_lines_fts) VALUES ('rebuild');
INSERT INTO log_lines_fts (log_lines_fts, rank) VALUES ('automerge', 8);`,
			"log_search_v3": `CREATE TABLE log_lines_fts_mark (indexed BIGINT NOT NULL);
INSERT INTO log_lines_fts_mark (indexed) SELECT COALESCE(MAX(id), 0) FROM log_lines;
DROP TRIGGER log_lines_fts_insert;
DROP TRIGGER log_lines_fts_delete;
CREATE TRIGGER log_lines_fts_delete AFTER DELETE ON log_lines
WHEN old.id <= (SELECT indexed FROM log_lines_fts_mark) BEGIN
    INSERT INTO log_lines_fts (log_lines_fts, rowid, text) VALUES ('delete', old.id, old.text);
    UPDATE log_lines_fts_mark SET indexed = (SELECT COALESCE(MAX(id), 0) FROM log_lines)
        WHERE indexed > (SELECT COALESCE(MAX(id), 0) FROM log_lines);
END;`,
			"audit_guard": `CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;`,
		},
	}
	postgresDialect = dialect{
		name: "postgres",
		words: map[string]string{
			"bytes":       "BYTEA",
			"serial":      "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
			"rowid":       "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
			"empty_bytes": "''::bytea",
			// pg_trgm is trusted (any database owner may install it) but not
			// always there: without it, searches read lines without an index.
			"log_search": `DO $$ BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'pg_trgm is not available: log search reads lines without an index';
END $$;
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        CREATE INDEX log_lines_trgm ON log_lines USING gin (text gin_trgm_ops);
    END IF;
END $$;`,
			"log_search_v2": `SELECT 1;`,
			"log_search_v3": `SELECT 1;`,
			"audit_guard": `CREATE FUNCTION nimbus_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit log is append-only'; END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION nimbus_audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION nimbus_audit_append_only();`,
		},
		forUpdate:  " FOR UPDATE",
		skipLocked: " FOR UPDATE SKIP LOCKED",
	}
)

// expand replaces the dialect's words in a migration.
func (d dialect) expand(sql string) string {
	for k, v := range d.words {
		sql = strings.ReplaceAll(sql, "{{"+k+"}}", v)
	}
	return sql
}

// isUniqueViolation reports whether err is a uniqueness violation.
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}
