package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/nimbus-build/nimbus/internal/store"
)

type deliveries struct{ repos }

var _ store.Deliveries = deliveries{}

func (x deliveries) Record(ctx context.Context, d store.Delivery) (bool, error) {
	res, err := x.exec(ctx, `INSERT INTO webhook_deliveries (id, event, received_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		d.ID, d.Event, micros(d.ReceivedAt))
	if err != nil {
		return false, fmt.Errorf("record delivery: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func (x deliveries) Seen(ctx context.Context, id string) (bool, error) {
	var n int
	if err := x.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM webhook_deliveries WHERE id = $1`, id).Scan(&n); err != nil {
		return false, fmt.Errorf("look up delivery: %w", err)
	}
	return n > 0, nil
}

func (x deliveries) Prune(ctx context.Context, before time.Time) (int, error) {
	res, err := x.exec(ctx, `DELETE FROM webhook_deliveries WHERE received_at < $1`, micros(before))
	if err != nil {
		return 0, fmt.Errorf("prune deliveries: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
