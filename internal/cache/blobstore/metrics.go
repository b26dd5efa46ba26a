package blobstore

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the Prometheus collectors shared by every store that
// Metrics.Wrap decorates; the backend label tells the stores apart.
type Metrics struct {
	ops      *prometheus.CounterVec
	duration *prometheus.HistogramVec
	bytes    *prometheus.CounterVec
}

// NewMetrics registers the blob store collectors on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_cache_blobstore_operations_total",
			Help: "Blob store operations by backend, operation, kind and result.",
		}, []string{"backend", "op", "kind", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nimbus_cache_blobstore_operation_duration_seconds",
			Help:    "Time to open a read, answer FindMissing or commit a write.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"backend", "op", "kind"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_cache_blobstore_bytes_total",
			Help: "Bytes read from and written to the blob store.",
		}, []string{"backend", "direction", "kind"}),
	}
	for _, c := range []prometheus.Collector{m.ops, m.duration, m.bytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Wrap returns next decorated with metrics labelled backend.
func (m *Metrics) Wrap(backend string, next Store) Store {
	return &metricsStore{m: m, backend: backend, next: next}
}

type metricsStore struct {
	m       *Metrics
	backend string
	next    Store
}

func result(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	case errors.Is(err, ErrQuotaExceeded):
		return "quota_exceeded"
	case errors.Is(err, ErrTooLarge):
		return "too_large"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "error"
}

func (s *metricsStore) observe(op string, kind Kind, start time.Time, err error) {
	k := kind.String()
	s.m.ops.WithLabelValues(s.backend, op, k, result(err)).Inc()
	s.m.duration.WithLabelValues(s.backend, op, k).Observe(time.Since(start).Seconds())
}

func (s *metricsStore) Get(ctx context.Context, ref Ref, offset, limit int64) (io.ReadCloser, int64, error) {
	start := time.Now()
	r, size, err := s.next.Get(ctx, ref, offset, limit)
	s.observe("get", ref.Kind, start, err)
	if err != nil {
		return nil, 0, err
	}
	return &countingReader{r: r, c: s.m.bytes.WithLabelValues(s.backend, "read", ref.Kind.String())}, size, nil
}

func (s *metricsStore) FindMissing(ctx context.Context, org string, kind Kind, ds []Digest) ([]Digest, error) {
	start := time.Now()
	missing, err := s.next.FindMissing(ctx, org, kind, ds)
	s.observe("find_missing", kind, start, err)
	return missing, err
}

func (s *metricsStore) NewWriter(ctx context.Context, ref Ref, size int64) (Writer, error) {
	w, err := s.next.NewWriter(ctx, ref, size)
	if err != nil {
		s.m.ops.WithLabelValues(s.backend, "put", ref.Kind.String(), result(err)).Inc()
		return nil, err
	}
	return &metricsWriter{s: s, next: w, ref: ref, start: time.Now()}, nil
}

type countingReader struct {
	r io.ReadCloser
	c prometheus.Counter
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.c.Add(float64(n))
	return n, err
}

func (r *countingReader) Close() error { return r.r.Close() }

// WriteTo keeps the wrapped reader's fast path (sendfile, splice).
func (r *countingReader) WriteTo(w io.Writer) (int64, error) {
	n, err := io.Copy(w, r.r)
	r.c.Add(float64(n))
	return n, err
}

type metricsWriter struct {
	s     *metricsStore
	next  Writer
	ref   Ref
	start time.Time
	n     int64
}

func (w *metricsWriter) Write(p []byte) (int, error) {
	n, err := w.next.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *metricsWriter) Commit(ctx context.Context) error {
	err := w.next.Commit(ctx)
	w.s.observe("put", w.ref.Kind, w.start, err)
	if err == nil {
		w.s.m.bytes.WithLabelValues(w.s.backend, "write", w.ref.Kind.String()).Add(float64(w.n))
	}
	return err
}

func (w *metricsWriter) Close() error { return w.next.Close() }

var _ ZstdStore = (*metricsStore)(nil)

func (s *metricsStore) GetZstd(ctx context.Context, ref Ref, offset, limit int64) (io.ReadCloser, int64, error) {
	zs, ok := s.next.(ZstdStore)
	if !ok {
		return nil, 0, ErrNotZstd
	}
	start := time.Now()
	r, size, err := zs.GetZstd(ctx, ref, offset, limit)
	if errors.Is(err, ErrNotZstd) {
		return nil, 0, err
	}
	s.observe("get", ref.Kind, start, err)
	if err != nil {
		return nil, 0, err
	}
	return &countingReader{r: r, c: s.m.bytes.WithLabelValues(s.backend, "read", ref.Kind.String())}, size, nil
}

func (s *metricsStore) NewZstdWriter(ctx context.Context, ref Ref) (Writer, error) {
	zs, ok := s.next.(ZstdStore)
	if !ok {
		return nil, ErrNotZstd
	}
	w, err := zs.NewZstdWriter(ctx, ref)
	if errors.Is(err, ErrNotZstd) {
		return nil, err
	}
	if err != nil {
		s.m.ops.WithLabelValues(s.backend, "put", ref.Kind.String(), result(err)).Inc()
		return nil, err
	}
	return &metricsWriter{s: s, next: w, ref: ref, start: time.Now()}, nil
}
