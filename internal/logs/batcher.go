package logs

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrBusy: the ingest queue is full; the upload was not taken and may be
// sent again shortly (the API answers 429 with Retry-After).
var ErrBusy = errors.New("logs: the ingest queue is full")

// BatchConfig sets how uploads are batched into the store's writes.
type BatchConfig struct {
	// A batch is written when it holds Lines lines or Bytes bytes, or
	// when its first upload has waited Delay (0: as soon as the store is
	// free: while a batch is written, the next one gathers).
	Lines int
	Bytes int64
	Delay time.Duration
	// QueueBytes bounds the bytes of uploads queued or being written;
	// an upload beyond it is refused at once (ErrBusy) instead of
	// queueing without bound. Uploads over 1 MiB may use three quarters
	// of it, so that floods of large uploads leave room for small ones.
	QueueBytes int64
}

// ClickHouseBatchLines is the lines of a batch on ClickHouse: each insert
// makes a part on the server, and it merges fewer, larger ones better.
const ClickHouseBatchLines = 20_000

// ClickHouseBatchBytes is the bytes of a batch on ClickHouse: at the
// database's 1 MiB, a batch held ~5,000 lines (with their raw chunks),
// a quarter of ClickHouseBatchLines, and ingest waited on four times the
// inserts.
const ClickHouseBatchBytes = 16 << 20

// DefaultBatchConfig is what `nimbus up` runs with. A batch is one write
// that holds SQLite's only writer: 1,000 lines keep it to tens of
// milliseconds (a lease renewal waits at most that long behind output);
// ClickHouse wants larger inserts: ClickHouseBatchLines.
func DefaultBatchConfig() BatchConfig {
	return BatchConfig{Lines: 1_000, Bytes: 1 << 20, Delay: 5 * time.Millisecond, QueueBytes: 64 << 20}
}

// batcher gathers the writes of concurrent uploads (of any jobs) into
// batches, each one Store.Write: one transaction on the SQL stores, one
// insert per table on ClickHouse. An upload waits for its batch's write,
// so nothing is acknowledged before it is stored.
type batcher struct {
	store Store
	cfg   BatchConfig

	mu      sync.Mutex
	pending []*queuedWrite
	lines   int
	bytes   int64 // of pending writes
	queued  int64 // of pending and in-flight writes
	first   time.Time
	kick    chan struct{}
	// closed: run has ended (or is draining); writes go to the store on
	// their own.
	closed bool

	flushes   prometheus.Histogram
	refused   prometheus.Counter
	queuedMet prometheus.Gauge
}

type queuedWrite struct {
	w     Write
	size  int64
	errc  chan error
	since time.Time
}

func newBatcher(s Store, cfg BatchConfig, reg prometheus.Registerer) *batcher {
	if cfg.Lines <= 0 {
		cfg.Lines = DefaultBatchConfig().Lines
	}
	if cfg.Bytes <= 0 {
		cfg.Bytes = DefaultBatchConfig().Bytes
	}
	b := &batcher{store: s, cfg: cfg, kick: make(chan struct{}, 1),
		flushes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "nimbus_logs_batch_lines", Help: "Lines per batch written to the log store.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "nimbus_logs_uploads_refused_total", Help: "Log uploads refused because the ingest queue was full (429).",
		}),
		queuedMet: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "nimbus_logs_queue_bytes", Help: "Bytes of log uploads queued or being written.",
		}),
	}
	if reg != nil {
		reg.MustRegister(b.flushes, b.refused, b.queuedMet)
	}
	return b
}

func writeSize(w Write) int64 {
	var n int64
	for _, c := range w.Chunks {
		n += int64(len(c.Data))
	}
	for _, l := range w.Lines {
		n += int64(len(l.Text)) + 64
	}
	return n + int64(len(w.State.Pending))
}

// write queues w and waits for its batch to be written; ErrBusy when the
// queue has no room for it.
func (b *batcher) write(ctx context.Context, w Write) error {
	q := &queuedWrite{w: w, size: writeSize(w), errc: make(chan error, 1), since: time.Now()}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errBatcherClosed
	}
	if limit := b.cfg.QueueBytes; limit > 0 {
		if q.size > smallUpload {
			limit -= limit / 4
		}
		if b.queued > 0 && b.queued+q.size > limit {
			b.mu.Unlock()
			b.refused.Inc()
			return ErrBusy
		}
	}
	if len(b.pending) == 0 {
		b.first = q.since
	}
	b.pending = append(b.pending, q)
	b.lines += len(w.Lines)
	b.bytes += q.size
	b.queued += q.size
	b.queuedMet.Set(float64(b.queued))
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	// Once queued, wait for the outcome even if ctx ends: the write may
	// be stored already, and the caller must not believe otherwise.
	return <-q.errc
}

// errBatcherClosed: the batcher is not running; write on your own.
var errBatcherClosed = errors.New("logs: batcher closed")

// smallUpload is the size up to which an upload may use the whole queue.
const smallUpload = 1 << 20

// run writes batches until ctx ends, and then what is queued.
func (b *batcher) run(ctx context.Context) error {
	b.mu.Lock()
	b.closed = false
	b.mu.Unlock()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch, wait := b.take()
		if batch == nil {
			if wait > 0 {
				timer.Reset(wait)
			}
			select {
			case <-ctx.Done():
				timer.Stop()
				b.drain(context.WithoutCancel(ctx))
				return nil
			case <-b.kick:
			case <-timer.C:
			}
			timer.Stop()
			continue
		}
		b.flush(ctx, batch)
	}
}

// take returns the next batch when it is due, or how long until it is
// (0: nothing pending).
func (b *batcher) take() ([]*queuedWrite, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) == 0 {
		return nil, 0
	}
	if b.lines < b.cfg.Lines && b.bytes < b.cfg.Bytes {
		if wait := time.Until(b.first.Add(b.cfg.Delay)); wait > 0 {
			return nil, wait
		}
	}
	// Take up to the thresholds (at least one write), oldest first.
	n, lines, bytes := 0, 0, int64(0)
	for n < len(b.pending) && (n == 0 || lines+len(b.pending[n].w.Lines) <= b.cfg.Lines && bytes+b.pending[n].size <= b.cfg.Bytes) {
		lines += len(b.pending[n].w.Lines)
		bytes += b.pending[n].size
		n++
	}
	batch := b.pending[:n:n]
	b.pending = b.pending[n:]
	b.lines -= lines
	b.bytes -= bytes
	if len(b.pending) > 0 {
		b.first = b.pending[0].since
	}
	return batch, 0
}

func (b *batcher) flush(ctx context.Context, batch []*queuedWrite) {
	ws := make([]Write, len(batch))
	lines := 0
	for i, q := range batch {
		ws[i] = q.w
		lines += len(q.w.Lines)
	}
	// The store's write runs to its end: a caller was promised an answer.
	errs, err := b.store.Write(context.WithoutCancel(ctx), ws)
	b.flushes.Observe(float64(lines))
	var done int64
	for i, q := range batch {
		switch {
		case err != nil:
			q.errc <- err
		case i < len(errs):
			q.errc <- errs[i]
		default:
			q.errc <- errors.New("logs: the store answered fewer writes than it was given")
		}
		done += q.size
	}
	b.mu.Lock()
	b.queued -= done
	b.queuedMet.Set(float64(b.queued))
	b.mu.Unlock()
}

// drain writes what is queued, without waiting for the batches' delay.
func (b *batcher) drain(ctx context.Context) {
	b.mu.Lock()
	b.cfg.Delay = 0
	b.closed = true
	b.mu.Unlock()
	for {
		batch, _ := b.take()
		if batch == nil {
			return
		}
		b.flush(ctx, batch)
	}
}
