package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// The log indexer brings SQLite's search index (log_lines_fts) up to date
// behind the writer, so that ingest does not pay for it line by line:
// lines are stored (and acknowledged) first, and indexed in units of
// logIndexUnit lines while ingest pauses, which costs the writer about a
// third less per line than a trigger on each 1,000-line batch (fewer,
// larger index segments to merge). log_lines_fts_mark holds the highest
// line id the index covers every line up to, moved in the same
// transaction as the lines it indexes: a restart resumes from it, and a
// search reads the lines past it directly, so none is ever missing.
//
// A unit is one bulk unit of the group commit: control work (lease
// renewals) waiting is taken before it, and waits at most one unit
// behind it. While bulk writes keep coming the indexer waits, unless the
// lines past the mark reach logIndexMaxLag: then it takes a unit between
// ingest's writes, which bounds what a search reads without the index.
type logIndexer struct {
	c    *committer
	r    *sql.DB // reads the lag without waiting for the writer
	log  *slog.Logger
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

const (
	// logIndexUnit is the lines indexed in one transaction: ~40 ms of the
	// writer on an idle core, about one ingest batch's worth of wait for
	// a lease renewal.
	logIndexUnit = 5_000
	// logIndexIdle is how long after the last bulk write the indexer
	// counts the writer as free.
	logIndexIdle = 200 * time.Millisecond
	// logIndexMaxLag is the most lines past the mark before the indexer
	// runs alongside ingest.
	logIndexMaxLag = 1_000_000
)

func startLogIndexer(c *committer, r *sql.DB, log *slog.Logger) *logIndexer {
	ix := &logIndexer{c: c, r: r, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	go ix.loop()
	return ix
}

func (ix *logIndexer) close() {
	ix.once.Do(func() { close(ix.stop) })
	<-ix.done
}

func (ix *logIndexer) loop() {
	defer close(ix.done)
	ctx := context.Background()
	tick := time.NewTicker(logIndexIdle / 2)
	defer tick.Stop()
	failing := false // said once per run of failures, and when it ends
	report := func(err error) {
		switch {
		case err != nil && !failing:
			ix.log.Warn("the log search index is not brought up to date; searches read the lines past it meanwhile", "err", err)
		case err == nil && failing:
			ix.log.Info("the log search index is brought up to date again")
		}
		failing = err != nil
	}
	for {
		select {
		case <-ix.stop:
			return
		case <-tick.C:
		}
		for {
			select {
			case <-ix.stop:
				return
			default:
			}
			lag, err := logIndexLag(ctx, ix.r)
			if err != nil {
				report(err)
				break
			}
			if lag == 0 {
				break
			}
			if ix.c.bulkBusy(logIndexIdle) && lag < logIndexMaxLag {
				break
			}
			// An error (the disk full, say) is tried again at the next
			// tick; searches read the lines past the mark meanwhile.
			n, err := indexLogs(ctx, ix.c, logIndexUnit)
			report(err)
			if err != nil || n == 0 {
				break
			}
		}
	}
}

// logIndexLag returns how many line ids lie past the mark.
func logIndexLag(ctx context.Context, q querier) (int64, error) {
	var lag int64
	err := q.QueryRowContext(ctx, `SELECT COALESCE((SELECT MAX(id) FROM log_lines), 0) - (SELECT indexed FROM log_lines_fts_mark)`).Scan(&lag)
	return lag, err
}

// indexLogs indexes up to unit lines past the mark and moves the mark
// past them, in one bulk unit of the group commit. It returns how many
// lines it indexed.
func indexLogs(ctx context.Context, c *committer, unit int) (int, error) {
	var n int
	err := c.enqueue(ctx, c.bulk, func(q querier) error {
		n = 0
		var mark int64
		if err := q.QueryRowContext(ctx, `SELECT indexed FROM log_lines_fts_mark`).Scan(&mark); err != nil {
			return fmt.Errorf("log index mark: %w", err)
		}
		var hi sql.NullInt64
		var count int
		if err := q.QueryRowContext(ctx, `SELECT MAX(id), COUNT(*) FROM (SELECT id FROM log_lines WHERE id > $1 ORDER BY id LIMIT $2)`,
			mark, unit).Scan(&hi, &count); err != nil {
			return fmt.Errorf("log index: %w", err)
		}
		if !hi.Valid {
			return nil
		}
		if _, err := q.ExecContext(ctx, `INSERT INTO log_lines_fts (rowid, text) SELECT id, text FROM log_lines WHERE id > $1 AND id <= $2`,
			mark, hi.Int64); err != nil {
			return fmt.Errorf("log index: %w", err)
		}
		if _, err := q.ExecContext(ctx, `UPDATE log_lines_fts_mark SET indexed = $1`, hi.Int64); err != nil {
			return fmt.Errorf("log index mark: %w", err)
		}
		n = count
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// LogIndexLag returns how many lines SQLite's log indexer has yet to
// bring into the search index (0 on PostgreSQL, whose index is kept
// current by each write).
func (db *DB) LogIndexLag(ctx context.Context) (int64, error) {
	if db.batch == nil {
		return 0, nil
	}
	return logIndexLag(ctx, db.readDB)
}
