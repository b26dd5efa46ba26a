package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// committer is SQLite's group commit. SQLite has one writer at a time and,
// with synchronous=FULL, one fsync per transaction, which caps a busy server
// at a few hundred transactions a second. The committer runs concurrent
// callers' transactions one after another inside a single database
// transaction, each in its own savepoint (so one caller's failure undoes
// only its own changes), and commits once for all of them: one fsync for
// the whole batch. A caller's call returns only after that commit, so
// nothing is acknowledged before it is durable.
//
// Bulk work (jobs' log lines) goes through a lane of its own: a
// transaction takes at most one bulk unit, and control work waiting
// (lease renewals, completions) is taken first, so a flood of output
// delays a renewal by at most one bulk unit, never by a queue of them.
type committer struct {
	db       *sql.DB
	requests chan *commitRequest
	bulk     chan *commitRequest
	maxBatch int
	// bulkAt is when a bulk write (runBulk) last started or ended, in
	// Unix nanoseconds: the log indexer waits while they keep coming.
	bulkAt atomic.Int64
	// stmts are statements prepared once on the write connection and
	// reused by units (execPrepared); wanted, those a unit asked for, are
	// prepared between transactions. Only the loop's goroutine, which
	// runs the units, touches them.
	stmts  map[string]*sql.Stmt
	wanted map[string]bool

	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

type commitRequest struct {
	ctx  context.Context
	fn   func(q querier) error
	errc chan error
}

func newCommitter(db *sql.DB) *committer {
	c := &committer{db: db, requests: make(chan *commitRequest, 1024), bulk: make(chan *commitRequest, 64), maxBatch: 256,
		stmts: map[string]*sql.Stmt{}, wanted: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go c.loop()
	return c
}

// run runs fn in a transaction that commits (durably) before run returns.
func (c *committer) run(ctx context.Context, fn func(q querier) error) error {
	return c.enqueue(ctx, c.requests, fn)
}

// runBulk is run for large writes that may wait behind control work.
func (c *committer) runBulk(ctx context.Context, fn func(q querier) error) error {
	c.bulkAt.Store(time.Now().UnixNano())
	defer func() { c.bulkAt.Store(time.Now().UnixNano()) }()
	return c.enqueue(ctx, c.bulk, fn)
}

// bulkBusy reports whether a bulk write started or ended within d.
func (c *committer) bulkBusy(d time.Duration) bool {
	return time.Since(time.Unix(0, c.bulkAt.Load())) < d
}

func (c *committer) enqueue(ctx context.Context, lane chan *commitRequest, fn func(q querier) error) error {
	r := &commitRequest{ctx: ctx, fn: fn, errc: make(chan error, 1)}
	select {
	case lane <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stop:
		return fmt.Errorf("store closed")
	}
	// Once queued, wait for the outcome even if ctx ends: the work may
	// already be committed, and the caller must not believe otherwise.
	return <-r.errc
}

func (c *committer) close() {
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.done
	for q, st := range c.stmts {
		st.Close()
		delete(c.stmts, q)
	}
}

// maxPrepared bounds the statements the committer keeps prepared.
const maxPrepared = 64

// prepareWanted prepares the statements units asked for, while no
// transaction holds the connection.
func (c *committer) prepareWanted() {
	for q := range c.wanted {
		delete(c.wanted, q)
		if len(c.stmts) >= maxPrepared {
			continue
		}
		if st, err := c.db.Prepare(q); err == nil {
			c.stmts[q] = st
		}
	}
}

func (c *committer) loop() {
	defer close(c.done)
	for {
		var first *commitRequest
		bulk := false
		select {
		case first = <-c.requests:
		default:
			select {
			case first = <-c.requests:
			case first = <-c.bulk:
				bulk = true
			case <-c.stop:
				// Fail whatever is still queued.
				for {
					select {
					case r := <-c.requests:
						r.errc <- fmt.Errorf("store closed")
					case r := <-c.bulk:
						r.errc <- fmt.Errorf("store closed")
					default:
						return
					}
				}
			}
		}
		batch := []*commitRequest{first}
	fill:
		for len(batch) < c.maxBatch {
			select {
			case r := <-c.requests:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		if !bulk {
			// One bulk unit may share the commit, after the control
			// work.
			select {
			case r := <-c.bulk:
				batch = append(batch, r)
			default:
			}
		}
		c.commit(batch)
		c.prepareWanted()
	}
}

// commit runs a batch in one transaction. Requests whose context ended
// while queued are refused without running.
func (c *committer) commit(batch []*commitRequest) {
	errs := make([]error, len(batch))
	tx, err := c.db.BeginTx(context.Background(), nil)
	if err != nil {
		for _, r := range batch {
			r.errc <- fmt.Errorf("begin: %w", err)
		}
		return
	}
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		if _, err := tx.Exec(`SAVEPOINT unit`); err != nil {
			errs[i] = err
			continue
		}
		if err := runUnit(r.fn, c, tx); err != nil {
			errs[i] = err
			if _, rerr := tx.Exec(`ROLLBACK TO unit`); rerr != nil {
				// The transaction is unusable: give up on the batch.
				tx.Rollback()
				for j, r := range batch {
					if errs[j] == nil || j == i {
						errs[j] = fmt.Errorf("rollback to savepoint: %w (after: %v)", rerr, err)
					}
					r.errc <- errs[j]
				}
				return
			}
		}
		if _, err := tx.Exec(`RELEASE unit`); err != nil && errs[i] == nil {
			errs[i] = err
		}
	}
	if err := tx.Commit(); err != nil {
		for _, r := range batch {
			r.errc <- fmt.Errorf("commit: %w", err)
		}
		return
	}
	for i, r := range batch {
		r.errc <- errs[i]
	}
}

// runUnit runs one caller's work. Its statements run without the caller's
// cancellation: SQLite answers an interrupted write by rolling back the
// whole transaction, which is shared. A panic becomes that caller's error.
func runUnit(fn func(q querier) error, c *committer, tx *sql.Tx) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic in transaction: %v", v)
		}
	}()
	return fn(uncancelled{tx, c})
}

// uncancelled is a querier whose statements ignore their context's
// cancellation (but keep its values).
type uncancelled struct {
	tx *sql.Tx
	c  *committer
}

// execPrepared is ExecContext through a statement prepared once on the
// write connection: the first time, it runs unprepared and asks the
// committer to prepare it for next time. For statements run often with
// the same text (a batch's INSERT is parsed in about the time it takes
// to run).
func (u uncancelled) execPrepared(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = context.WithoutCancel(ctx)
	if st := u.c.stmts[query]; st != nil {
		return u.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	if len(u.c.stmts)+len(u.c.wanted) < maxPrepared {
		u.c.wanted[query] = true
	}
	return u.tx.ExecContext(ctx, query, args...)
}

// execMaybePrepared is q's execPrepared where it has one (SQLite's group
// commit), else ExecContext.
func execMaybePrepared(ctx context.Context, q querier, query string, args ...any) (sql.Result, error) {
	if p, ok := q.(interface {
		execPrepared(ctx context.Context, query string, args ...any) (sql.Result, error)
	}); ok {
		return p.execPrepared(ctx, query, args...)
	}
	return q.ExecContext(ctx, query, args...)
}

func (u uncancelled) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return u.tx.ExecContext(context.WithoutCancel(ctx), query, args...)
}

func (u uncancelled) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return u.tx.QueryContext(context.WithoutCancel(ctx), query, args...)
}

func (u uncancelled) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return u.tx.QueryRowContext(context.WithoutCancel(ctx), query, args...)
}
