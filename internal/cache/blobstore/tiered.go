package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Tiered puts a fast store (local disk) in front of a slow one (object
// storage). Reads go to the fast tier first and fall through to the slow one,
// filling the fast tier as the bytes stream past. Writes are acknowledged
// once the fast tier has committed them and copied to the slow tier in the
// background (write-behind). A slow tier that fails or is unavailable turns
// into misses, never into errors for the client.
type Tiered struct {
	fast, slow Store
	log        *slog.Logger
	opts       TieredOptions
	queue      chan Ref
	qmu        sync.RWMutex // guards closed and sends on queue
	closed     bool
	wg         sync.WaitGroup
	closeOnce  sync.Once
	stop       context.CancelFunc
	ctx        context.Context
}

var _ Store = (*Tiered)(nil)

// TieredOptions tunes a Tiered store.
type TieredOptions struct {
	// QueueLength bounds the write-behind queue; when it is full, new blobs
	// stay in the fast tier only. Default 10000.
	QueueLength int
	// Workers is the number of write-behind copiers. Default 4.
	Workers int
	// RetryMax bounds the wait between attempts to copy a blob while the
	// slow tier is unavailable (the wait doubles from 100 ms, with
	// jitter). Default 30 seconds.
	RetryMax time.Duration
}

// NewTiered starts the write-behind workers; Close stops them.
func NewTiered(fast, slow Store, log *slog.Logger, opts TieredOptions) *Tiered {
	if opts.QueueLength <= 0 {
		opts.QueueLength = 10000
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 30 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Tiered{fast: fast, slow: slow, log: log, opts: opts, queue: make(chan Ref, opts.QueueLength), stop: cancel, ctx: ctx}
	for range opts.Workers {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.copyLoop(ctx)
		}()
	}
	return t
}

// Close finishes the queued copies that can be made before ctx ends, then
// stops the workers and waits for them.
func (t *Tiered) Close(ctx context.Context) error {
	t.closeOnce.Do(func() {
		t.qmu.Lock()
		t.closed = true
		close(t.queue)
		t.qmu.Unlock()
		done := make(chan struct{})
		go func() { t.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			t.stop()
			<-done
		}
		t.stop()
	})
	return nil
}

func (t *Tiered) copyLoop(ctx context.Context) {
	for ref := range t.queue {
		t.copyWithRetry(ctx, ref)
	}
}

// copyWithRetry copies ref, waiting (with backoff and jitter) while the
// slow tier is unavailable; other failures drop the copy.
func (t *Tiered) copyWithRetry(ctx context.Context, ref Ref) {
	wait := 100 * time.Millisecond
	for {
		err := t.copyOne(ctx, ref)
		switch {
		case err == nil, ctx.Err() != nil:
			return
		case errors.Is(err, ErrQuotaExceeded), errors.Is(err, ErrTooLarge):
			// The slow tier's own limits: the blob stays in the fast tier.
			t.log.Debug("copy blob to slow tier", "kind", ref.Kind.String(), "org", ref.Org, "err", err)
			return
		case !errors.Is(err, ErrUnavailable):
			t.log.Warn("copy blob to slow tier", "kind", ref.Kind.String(), "org", ref.Org, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait/2 + rand.N(wait/2+1)):
		}
		wait = min(2*wait, t.opts.RetryMax)
	}
}

// copyOne copies ref from the fast tier to the slow tier, unless the slow
// tier has that CAS blob already (Bazel's HTTP cache uploads every blob
// again on every build).
func (t *Tiered) copyOne(ctx context.Context, ref Ref) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if ref.Kind == KindCAS {
		missing, err := t.slow.FindMissing(ctx, ref.Org, ref.Kind, []Digest{ref.Digest})
		if err != nil {
			return err
		}
		if len(missing) == 0 {
			return nil
		}
	}
	r, size, err := t.fast.Get(ctx, ref, 0, 0)
	if errors.Is(err, ErrNotFound) {
		return nil // evicted meanwhile
	}
	if err != nil {
		return err
	}
	defer r.Close()
	return Put(ctx, t.slow, ref, size, r)
}

// Get implements Store.
func (t *Tiered) Get(ctx context.Context, ref Ref, offset, limit int64) (io.ReadCloser, int64, error) {
	r, size, err := t.fast.Get(ctx, ref, offset, limit)
	if !errors.Is(err, ErrNotFound) {
		return r, size, err
	}
	if offset != 0 || limit > 0 {
		r, size, err = t.slow.Get(ctx, ref, offset, limit)
		return r, size, t.slowErr(ref, err)
	}
	r, size, err = t.slow.Get(ctx, ref, 0, 0)
	if err != nil {
		return nil, 0, t.slowErr(ref, err)
	}
	w, err := t.fast.NewWriter(ctx, ref, size)
	if err != nil {
		// The fast tier cannot take it (quota, size): serve without filling.
		return r, size, nil
	}
	return &fillReader{r: r, w: w, size: size, ctx: context.WithoutCancel(ctx)}, size, nil
}

func (t *Tiered) slowErr(ref Ref, err error) error {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) {
		return err
	}
	if errors.Is(err, ErrUnavailable) {
		// Known to be down (its circuit breaker says so): a miss, quietly.
		return fmt.Errorf("%s: %w (slow tier: %v)", ref, ErrNotFound, err)
	}
	t.log.Warn("read from slow tier", "kind", ref.Kind.String(), "org", ref.Org, "err", err)
	return fmt.Errorf("%s: %w (slow tier: %v)", ref, ErrNotFound, err)
}

// FindMissing implements Store.
func (t *Tiered) FindMissing(ctx context.Context, org string, kind Kind, ds []Digest) ([]Digest, error) {
	missing, err := t.fast.FindMissing(ctx, org, kind, ds)
	if err != nil || len(missing) == 0 {
		return missing, err
	}
	still, err := t.slow.FindMissing(ctx, org, kind, missing)
	if err != nil {
		if !errors.Is(err, ErrUnavailable) {
			t.log.Warn("find missing in slow tier", "org", org, "err", err)
		}
		return missing, nil
	}
	return still, nil
}

// NewWriter implements Store.
func (t *Tiered) NewWriter(ctx context.Context, ref Ref, size int64) (Writer, error) {
	w, err := t.fast.NewWriter(ctx, ref, size)
	if err != nil {
		return nil, err
	}
	return &tieredWriter{t: t, next: w, ref: ref}, nil
}

type tieredWriter struct {
	t    *Tiered
	next Writer
	ref  Ref
}

func (w *tieredWriter) Write(p []byte) (int, error) { return w.next.Write(p) }
func (w *tieredWriter) Close() error                { return w.next.Close() }

func (w *tieredWriter) Commit(ctx context.Context) error {
	if err := w.next.Commit(ctx); err != nil {
		return err
	}
	w.t.enqueue(w.ref)
	return nil
}

// Backfill queues a copy of ref (which the fast tier holds) to the slow
// tier, waiting for room in the queue; it fails only when ctx ends or the
// store is closing.
func (t *Tiered) Backfill(ctx context.Context, ref Ref) error {
	for {
		t.qmu.RLock()
		if t.closed {
			t.qmu.RUnlock()
			return fmt.Errorf("backfill %s: %w", ref, ErrUnavailable)
		}
		select {
		case t.queue <- ref:
			t.qmu.RUnlock()
			return nil
		default:
		}
		t.qmu.RUnlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (t *Tiered) enqueue(ref Ref) {
	t.qmu.RLock()
	defer t.qmu.RUnlock()
	if t.closed {
		return // shutting down: the blob stays in the fast tier
	}
	select {
	case t.queue <- ref:
	default:
		t.log.Warn("slow tier queue full; blob kept in fast tier only", "kind", ref.Kind.String(), "org", ref.Org)
	}
}

// fillReader serves a blob from the slow tier and writes it into the fast
// tier as it goes; the fast copy is committed only when every byte passed.
type fillReader struct {
	r    io.ReadCloser
	w    Writer
	size int64
	n    int64
	ctx  context.Context
	werr error
	done bool
}

func (f *fillReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 && f.werr == nil {
		if _, werr := f.w.Write(p[:n]); werr != nil {
			f.werr = werr
		}
		f.n += int64(n)
	}
	if err == io.EOF && !f.done && f.werr == nil && f.n == f.size {
		f.done = true
		f.werr = f.w.Commit(f.ctx)
	}
	return n, err
}

func (f *fillReader) Close() error {
	f.w.Close()
	return f.r.Close()
}

var _ ZstdStore = (*Tiered)(nil)

// GetZstd implements ZstdStore: what the fast tier keeps compressed. A
// blob only the slow tier has is ErrNotZstd, so that the caller reads it
// through Get (which fills the fast tier) and compresses it.
func (t *Tiered) GetZstd(ctx context.Context, ref Ref, offset, limit int64) (io.ReadCloser, int64, error) {
	zs, ok := t.fast.(ZstdStore)
	if !ok {
		return nil, 0, ErrNotZstd
	}
	r, n, err := zs.GetZstd(ctx, ref, offset, limit)
	if errors.Is(err, ErrNotFound) {
		return nil, 0, ErrNotZstd
	}
	return r, n, err
}

// NewZstdWriter implements ZstdStore: the fast tier takes the compressed
// bytes, and the slow tier gets its copy (read back through Get) once
// they are committed.
func (t *Tiered) NewZstdWriter(ctx context.Context, ref Ref) (Writer, error) {
	zs, ok := t.fast.(ZstdStore)
	if !ok {
		return nil, ErrNotZstd
	}
	w, err := zs.NewZstdWriter(ctx, ref)
	if err != nil {
		return nil, err
	}
	return &tieredWriter{t: t, next: w, ref: ref}, nil
}
