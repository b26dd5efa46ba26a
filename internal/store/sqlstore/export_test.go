package sqlstore

import "context"

// ExecForTest runs raw SQL on the write connection.
func (db *DB) ExecForTest(ctx context.Context, q string) error {
	_, err := db.writeDB.ExecContext(ctx, q)
	return err
}
