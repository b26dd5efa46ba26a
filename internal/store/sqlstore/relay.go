package sqlstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// PGRelay is PostgreSQL's LISTEN/NOTIFY on one channel: it carries
// wake-ups between the control-plane replicas sharing the database
// (notify.Relay).
type PGRelay struct {
	dsn     string
	channel string
	db      *DB
}

// Relay returns the relay of channel, or nil on SQLite (one process).
func (db *DB) Relay(channel string) *PGRelay {
	if db.d != &postgresDialect {
		return nil
	}
	return &PGRelay{dsn: db.dsn, channel: channel, db: db}
}

// Publish sends each payload on the channel.
func (r *PGRelay) Publish(ctx context.Context, payloads []string) error {
	for _, p := range payloads {
		if _, err := r.db.writeDB.ExecContext(ctx, `SELECT pg_notify($1, $2)`, r.channel, p); err != nil {
			return fmt.Errorf("notify %s: %w", r.channel, err)
		}
	}
	return nil
}

// Listen holds a connection of its own listening on the channel and calls
// fn with each payload until ctx ends or the connection fails.
func (r *PGRelay) Listen(ctx context.Context, fn func(payload string)) error {
	conn, err := pgx.Connect(ctx, r.dsn)
	if err != nil {
		return fmt.Errorf("listen %s: %w", r.channel, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{r.channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen %s: %w", r.channel, err)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("listen %s: %w", r.channel, err)
		}
		fn(n.Payload)
	}
}
