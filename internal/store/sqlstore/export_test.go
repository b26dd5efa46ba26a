package sqlstore

import (
	"context"
	"strings"
)

// ExecForTest runs raw SQL on the write connection.
func (db *DB) ExecForTest(ctx context.Context, q string) error {
	_, err := db.writeDB.ExecContext(ctx, q)
	return err
}

// OpenAtVersion opens a database and applies the migrations up to
// version last only; Migrate applies the rest.
func OpenAtVersion(ctx context.Context, dsn string, last int) (*DB, error) {
	var db *DB
	var err error
	if strings.HasPrefix(dsn, "postgres://") {
		db, err = openPostgres(dsn, 4)
	} else {
		db, err = openSQLite(dsn)
	}
	if err != nil {
		return nil, err
	}
	if err := db.migrateTo(ctx, last); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Migrate applies the migrations not applied yet.
func (db *DB) Migrate(ctx context.Context) error { return db.migrate(ctx) }

// OpenWithoutLogIndexer opens a database whose log search index stays
// where it is unless IndexLogs moves it.
func OpenWithoutLogIndexer(ctx context.Context, dsn string) (*DB, error) {
	return OpenWith(ctx, dsn, Options{noLogIndexer: true})
}

// IndexLogs indexes up to unit lines past the log index's mark.
func (db *DB) IndexLogs(ctx context.Context, unit int) (int, error) {
	return indexLogs(ctx, db.batch, unit)
}

// QueryIntForTest returns the integer that a query on the write
// connection selects.
func (db *DB) QueryIntForTest(ctx context.Context, q string) (int64, error) {
	var n int64
	err := db.writeDB.QueryRowContext(ctx, q).Scan(&n)
	return n, err
}
