// Package sqlstore implements internal/store on SQLite (the embedded
// default, pure Go, WAL) and PostgreSQL (pgx), with one set of SQL
// statements and embedded numbered migrations.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	"github.com/nimbus-build/nimbus/internal/store"
)

//go:embed migrations/*.sql
var migrations embed.FS

// querier is what both *sql.DB and *sql.Tx offer.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// DB is a store.Store on one database.
type DB struct {
	repos
	readDB  *sql.DB
	writeDB *sql.DB
	dsn     string      // PostgreSQL's, for connections outside the pool
	indexer *logIndexer // SQLite's log indexer, if running
}

var _ store.Store = (*DB)(nil)

// Open connects to the database named by dsn and brings its schema up to
// date. A dsn starting with postgres:// or postgresql:// selects
// PostgreSQL; anything else is the path of a SQLite file.
func Open(ctx context.Context, dsn string) (*DB, error) {
	return OpenWith(ctx, dsn, Options{})
}

// Options tune the connection pool.
type Options struct {
	// MaxConns bounds PostgreSQL connections. On a small machine fewer
	// connections do more: each is a server process competing for the
	// same cores. Default: 4 per CPU, at least 8.
	MaxConns int

	// Logger receives what goes wrong in the background (SQLite's log
	// indexer). Default: slog.Default().
	Logger *slog.Logger

	// noLogIndexer leaves SQLite's log search index behind the lines
	// (tests: searches then read every line past the index's mark).
	noLogIndexer bool
}

// OpenWith is Open with options.
func OpenWith(ctx context.Context, dsn string, o Options) (*DB, error) {
	if o.MaxConns <= 0 {
		o.MaxConns = max(8, 4*runtime.NumCPU())
	}
	var db *DB
	var err error
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		db, err = openPostgres(dsn, o.MaxConns)
	} else {
		db, err = openSQLite(dsn)
	}
	if err != nil {
		return nil, err
	}
	if err := db.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if db.batch != nil && !o.noLogIndexer {
		log := o.Logger
		if log == nil {
			log = slog.Default()
		}
		db.indexer = startLogIndexer(db.batch, db.readDB, log.With("component", "log-indexer"))
	}
	return db, nil
}

func openPostgres(dsn string, maxConns int) (*DB, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	d := &postgresDialect
	return &DB{repos: repos{d: d, r: db, w: db, db: db}, readDB: db, writeDB: db, dsn: dsn}, nil
}

func openSQLite(file string) (*DB, error) {
	if file == "" {
		return nil, fmt.Errorf("open sqlite: empty path")
	}
	// synchronous(FULL): a transaction acknowledged is on disk, even if
	// the machine loses power right after.
	base := "file:" + file + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)" +
		"&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	w, err := sql.Open("sqlite", base+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", file, err)
	}
	// SQLite has one writer at a time; one connection makes writers queue
	// in Go instead of spinning on SQLITE_BUSY.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	r, err := sql.Open("sqlite", base+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", file, err)
	}
	r.SetMaxOpenConns(8)
	r.SetMaxIdleConns(8)
	d := &sqliteDialect
	return &DB{repos: repos{d: d, r: r, w: w, db: w, batch: newCommitter(w)}, readDB: r, writeDB: w}, nil
}

// Engine implements store.Store.
func (db *DB) Engine() string { return db.d.name }

// Ping implements store.Store.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.writeDB.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", db.d.name, err)
	}
	return nil
}

// Close implements store.Store.
func (db *DB) Close() error {
	if db.indexer != nil {
		db.indexer.close()
	}
	if db.batch != nil {
		db.batch.close()
	}
	err := db.writeDB.Close()
	if db.readDB != db.writeDB {
		if rerr := db.readDB.Close(); err == nil {
			err = rerr
		}
	}
	return err
}

// InTx implements store.Store.
func (db *DB) InTx(ctx context.Context, fn func(store.Repos) error) error {
	return db.repos.inTx(ctx, func(q querier) error {
		return fn(repos{d: db.d, r: q, w: q})
	})
}

// migrate applies the embedded migrations not yet applied, each in its own
// transaction. On PostgreSQL an advisory lock keeps replicas that start
// together from racing.
func (db *DB) migrate(ctx context.Context) error { return db.migrateTo(ctx, math.MaxInt) }

// migrateTo applies the migrations up to version last.
func (db *DB) migrateTo(ctx context.Context, last int) error {
	files, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(files)
	conn, err := db.writeDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	if db.d.name == "postgres" {
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(7138402)"); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(7138402)")
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("migrate: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	for _, f := range files {
		name := path.Base(f)
		v, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: name must start with its number", name)
		}
		if applied[v] || v > last {
			continue
		}
		body, err := migrations.ReadFile(f)
		if err != nil {
			return err
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, db.d.expand(string(body))); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, v); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", name, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %s: %w", name, err)
		}
	}
	return nil
}

// repos implements store.Repos over a querier pair: reads go to r, writes
// to w. Inside a transaction both are the transaction and db is nil.
type repos struct {
	d  *dialect
	r  querier
	w  querier
	db *sql.DB // for starting transactions; nil inside one
	// batch is SQLite's group commit; nil for PostgreSQL, whose own
	// concurrent commits need none.
	batch *committer
}

func (x repos) Orgs() store.Orgs             { return orgs{x} }
func (x repos) Tokens() store.Tokens         { return tokens{x} }
func (x repos) Agents() store.Agents         { return agents{x} }
func (x repos) Jobs() store.Jobs             { return jobs{x} }
func (x repos) Audit() store.Audit           { return audit{x} }
func (x repos) Keys() store.Keys             { return keys{x} }
func (x repos) Deliveries() store.Deliveries { return deliveries{x} }
func (x repos) Sessions() store.Sessions     { return sessions{x} }

// inTx runs fn in a transaction on the write connection (through the
// group commit on SQLite), or directly on the current transaction when
// there already is one. Every write goes through it.
func (x repos) inTx(ctx context.Context, fn func(q querier) error) error {
	return x.tx(ctx, false, fn)
}

// inBulkTx is inTx for large writes (log lines): on SQLite they take the
// group commit's bulk lane, behind control work.
func (x repos) inBulkTx(ctx context.Context, fn func(q querier) error) error {
	return x.tx(ctx, true, fn)
}

func (x repos) tx(ctx context.Context, bulk bool, fn func(q querier) error) error {
	if x.db == nil {
		return fn(x.w)
	}
	if x.batch != nil {
		if bulk {
			return x.batch.runBulk(ctx, fn)
		}
		return x.batch.run(ctx, fn)
	}
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Backup writes a consistent copy of a SQLite database to dest, while it
// stays in use. PostgreSQL is backed up with its own tools (pg_dump).
func (db *DB) Backup(ctx context.Context, dest string) error {
	if db.d.name != "sqlite" {
		return fmt.Errorf("backup: use pg_dump for %s", db.d.name)
	}
	if _, err := db.writeDB.ExecContext(ctx, `VACUUM INTO $1`, dest); err != nil {
		return fmt.Errorf("backup to %s: %w", dest, err)
	}
	return nil
}

// exec runs one write statement in its own transaction (the group commit
// on SQLite), or in the current one.
func (x repos) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := x.inTx(ctx, func(q querier) error {
		var err error
		res, err = q.ExecContext(ctx, query, args...)
		return err
	})
	return res, err
}

// writeRow runs one write statement with a RETURNING clause and scans its
// row with scan, in its own transaction or in the current one.
func (x repos) writeRow(ctx context.Context, scan func(row interface{ Scan(...any) error }) error, query string, args ...any) error {
	return x.inTx(ctx, func(q querier) error {
		return scan(q.QueryRowContext(ctx, query, args...))
	})
}
