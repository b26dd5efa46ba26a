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
