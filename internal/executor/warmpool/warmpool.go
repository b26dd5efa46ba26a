// Package warmpool keeps sandboxes ready ahead of the jobs that take them:
// an executor's pools (a Docker image's containers, a bubblewrap sandbox
// with its Docker daemon) name the slots they keep one ready for; a job in
// such a slot takes it, uses it once, and the pool makes a new one.
//
// One goroutine per Pool makes the sandboxes, one at a time, oldest want
// first, with a backoff after a failure: a burst of jobs taking them never
// turns into a burst of sandbox starts beside the jobs, and an empty pool
// never delays a job (it makes its own, the cold path).
package warmpool

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Backoff after a failed attempt, doubling to the maximum.
var (
	retryMin = 2 * time.Second
	retryMax = time.Minute
)

// Key names one ready sandbox: a pool and the slot it is made for.
type Key struct {
	Pool string // e.g. "docker:IMAGE", "bwrap:docker"; a metrics label
	Slot int
}

// Metrics are the pools' Prometheus metrics, shared by every Pool of an
// agent (register them once).
type Metrics struct {
	takes  *prometheus.CounterVec
	fills  *prometheus.HistogramVec
	failed *prometheus.CounterVec
	ready  *prometheus.GaugeVec
}

// NewMetrics makes the metrics and registers them with reg (nil: kept
// unregistered, e.g. in benchmarks).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	const help = ` Pools: "docker:IMAGE" (the Docker executor's containers), "bwrap:docker" (bubblewrap sandboxes with a Docker daemon).`
	m := &Metrics{
		takes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_warm_pool_takes_total",
			Help: "Jobs a warm pool could serve, by whether a sandbox was ready (hit) or the job made its own (miss)." + help,
		}, []string{"pool", "result"}),
		fills: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nimbus_warm_pool_refill_seconds",
			Help:    "Time to make one warm sandbox." + help,
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}, []string{"pool"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_warm_pool_refill_failures_total",
			Help: "Warm sandboxes that could not be made (retried with backoff)." + help,
		}, []string{"pool"}),
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "nimbus_warm_pool_ready",
			Help: "Warm sandboxes ready now." + help,
		}, []string{"pool"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.takes, m.fills, m.failed, m.ready} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("warm pool metrics: %w", err)
			}
		}
	}
	return m, nil
}

// Takes is how many jobs of pool took a sandbox (result "hit") or made
// their own ("miss").
func (m *Metrics) Takes(pool, result string) float64 {
	return value(m.takes.WithLabelValues(pool, result))
}

// Ready is how many of pool's sandboxes are ready now.
func (m *Metrics) Ready(pool string) float64 { return value(m.ready.WithLabelValues(pool)) }

// Refills is how many of pool's sandboxes were made.
func (m *Metrics) Refills(pool string) uint64 {
	var d dto.Metric
	if h, ok := m.fills.WithLabelValues(pool).(prometheus.Metric); ok && h.Write(&d) == nil {
		return d.GetHistogram().GetSampleCount()
	}
	return 0
}

func value(c prometheus.Metric) float64 {
	var d dto.Metric
	if c.Write(&d) != nil {
		return 0
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.GetGauge().GetValue()
}

// Funcs are how a Pool makes, checks and removes its executor's sandboxes.
type Funcs[T any] struct {
	// Make makes a ready sandbox for k; on error nothing of it is left.
	Make func(ctx context.Context, k Key) (T, error)
	// Alive reports whether a ready sandbox can still serve a job.
	Alive func(ctx context.Context, v T) error
	// Destroy removes a sandbox no job will take.
	Destroy func(v T)
}

// Pool holds ready sandboxes of type T.
type Pool[T any] struct {
	f       Funcs[T]
	m       *Metrics
	log     *slog.Logger
	keys    map[Key]bool
	stop    context.CancelFunc
	done    chan struct{}
	wake    chan struct{}
	mu      sync.Mutex
	ready   map[Key]T
	wanted  []Key // to make, oldest first
	queued  map[Key]bool
	closed  bool
	changed chan struct{} // closed and replaced whenever ready changes
}

// New starts making one sandbox for each of keys. m may be nil (metrics
// kept but not exported).
func New[T any](keys []Key, f Funcs[T], m *Metrics, log *slog.Logger) *Pool[T] {
	if m == nil {
		m, _ = NewMetrics(nil)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(context.Background())
	p := &Pool[T]{f: f, m: m, log: log.With("component", "warmpool"), keys: map[Key]bool{}, stop: stop,
		done: make(chan struct{}), wake: make(chan struct{}, 1), ready: map[Key]T{}, queued: map[Key]bool{},
		changed: make(chan struct{})}
	for _, k := range keys {
		p.keys[k] = true
		m.ready.WithLabelValues(k.Pool).Add(0)
		p.want(k)
	}
	go p.fill(ctx)
	return p
}

// Has reports whether the pool keeps a sandbox for k.
func (p *Pool[T]) Has(k Key) bool { return p != nil && p.keys[k] }

// want queues k to be made, unless it is queued or ready.
func (p *Pool[T]) want(k Key) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.ready[k]; ok || p.closed || p.queued[k] {
		return
	}
	p.queued[k] = true
	p.wanted = append(p.wanted, k)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// fill makes the wanted sandboxes, one at a time, until ctx ends.
func (p *Pool[T]) fill(ctx context.Context) {
	defer close(p.done)
	backoff := retryMin
	for {
		p.mu.Lock()
		var k Key
		ok := len(p.wanted) > 0
		if ok {
			k, p.wanted = p.wanted[0], p.wanted[1:]
		}
		p.mu.Unlock()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
				continue
			}
		}
		start := time.Now()
		v, err := p.f.Make(ctx, k)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.m.failed.WithLabelValues(k.Pool).Inc()
			p.log.Warn("could not make a warm sandbox; retrying", "pool", k.Pool, "slot", k.Slot, "in", backoff, "error", err)
			p.mu.Lock()
			p.wanted = append(p.wanted, k)
			p.mu.Unlock()
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, retryMax)
			continue
		}
		backoff = retryMin
		p.m.fills.WithLabelValues(k.Pool).Observe(time.Since(start).Seconds())
		p.mu.Lock()
		delete(p.queued, k)
		if p.closed {
			p.mu.Unlock()
			p.f.Destroy(v)
			return
		}
		p.ready[k] = v
		p.m.ready.WithLabelValues(k.Pool).Inc()
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
}

// Take hands out k's ready sandbox, checked alive, and queues its
// replacement. ok is false (a miss, counted) when none is ready: the job
// makes its own. Call it only for jobs the pool could serve (Has, and
// whatever else the executor requires of them); Miss counts the others
// of a pool's jobs.
func (p *Pool[T]) Take(ctx context.Context, k Key) (v T, ok bool) {
	if !p.Has(k) {
		return v, false
	}
	p.mu.Lock()
	v, ok = p.ready[k]
	delete(p.ready, k)
	p.mu.Unlock()
	if ok {
		p.m.ready.WithLabelValues(k.Pool).Dec()
	}
	p.want(k)
	if ok {
		if err := p.f.Alive(ctx, v); err != nil {
			p.log.Warn("a warm sandbox died while it waited; the job makes its own", "pool", k.Pool, "slot", k.Slot, "error", err)
			p.f.Destroy(v)
			ok = false
		}
	}
	p.count(k.Pool, ok)
	var zero T
	if !ok {
		return zero, false
	}
	return v, true
}

// Miss counts a job of pool that could not take a sandbox (one it does
// not match: other limits, binds…).
func (p *Pool[T]) Miss(pool string) {
	if p != nil {
		p.count(pool, false)
	}
}

func (p *Pool[T]) count(pool string, hit bool) {
	result := "miss"
	if hit {
		result = "hit"
	}
	p.m.takes.WithLabelValues(pool, result).Inc()
}

// WaitFull blocks until every key has a ready sandbox, or ctx ends.
func (p *Pool[T]) WaitFull(ctx context.Context) error {
	if p == nil {
		return nil
	}
	for {
		p.mu.Lock()
		n, ch := len(p.ready), p.changed
		p.mu.Unlock()
		if n == len(p.keys) {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-ch:
		}
	}
}

// Close stops the making and removes the ready sandboxes.
func (p *Pool[T]) Close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	ready := p.ready
	p.ready = map[Key]T{}
	p.mu.Unlock()
	p.stop()
	<-p.done
	for k, v := range ready {
		p.m.ready.WithLabelValues(k.Pool).Dec()
		p.f.Destroy(v)
	}
}
