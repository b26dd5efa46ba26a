package docker

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nimbus-build/nimbus/internal/executor"
)

// Warm keeps containers of one image ready, so that a job leased for them
// starts at once: its container already exists and runs, and its init
// waits for the command. A warm container serves one job, is removed with
// it and replaced.
type Warm struct {
	// Image is the image of the containers; a job naming exactly this
	// reference can take one.
	Image string
	// Slots: each of the slots 0 … Slots-1 keeps one container ready,
	// made as that slot's uid (the agent fills its lowest free slot
	// first).
	Slots int
	// Limits are the limits the containers are made with (the agent's
	// job limits; Disk is not the Docker executor's). A job with other
	// limits, binds or a read-only root does not take one.
	Limits executor.Limits
}

// Refill backoff after a failed attempt, doubling to the maximum.
const (
	warmRetryMin = 2 * time.Second
	warmRetryMax = time.Minute
)

type warmKey struct {
	slot  int
	image string
}

// warmPool holds the ready containers. One goroutine makes them, one at a
// time: a burst of jobs taking them cannot turn into a burst of container
// starts beside the jobs.
type warmPool struct {
	e     *Executor
	log   *slog.Logger
	specs map[string]Warm // by image

	mu      sync.Mutex
	ready   map[warmKey]*container
	wanted  []warmKey // to make, in order
	queued  map[warmKey]bool
	closed  bool
	wake    chan struct{}
	stop    context.CancelFunc
	done    chan struct{}
	changed chan struct{} // closed and replaced whenever ready changes

	takes   *prometheus.CounterVec
	fills   *prometheus.HistogramVec
	failed  *prometheus.CounterVec
	readyGa *prometheus.GaugeVec
}

// newWarmPool starts filling the pools of specs. It returns nil when there
// are none (a nil pool has no containers and takes none).
func newWarmPool(e *Executor, specs []Warm, reg prometheus.Registerer) (*warmPool, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	p := &warmPool{e: e, log: e.log.With("pool", "warm"), specs: map[string]Warm{}, ready: map[warmKey]*container{},
		queued: map[warmKey]bool{}, wake: make(chan struct{}, 1), done: make(chan struct{}), changed: make(chan struct{})}
	for _, w := range specs {
		switch {
		case w.Image == "" || w.Slots <= 0:
			return nil, fmt.Errorf("warm pool %q of %d: want an image and at least one slot", w.Image, w.Slots)
		case w.Limits.Validate() != nil:
			return nil, fmt.Errorf("warm pool %s: %w", w.Image, w.Limits.Validate())
		}
		if _, dup := p.specs[w.Image]; dup {
			return nil, fmt.Errorf("warm pool %s: given twice", w.Image)
		}
		w.Limits.Disk = 0
		p.specs[w.Image] = w
	}
	const help = " Pools are the Docker executor's, by image (\"docker:IMAGE\")."
	p.takes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nimbus_warm_pool_takes_total",
		Help: "Jobs that asked a warm pool for a sandbox, by whether one was ready (hit) or the job made its own (miss)." + help,
	}, []string{"pool", "result"})
	p.fills = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "nimbus_warm_pool_refill_seconds",
		Help:    "Time to make one warm sandbox." + help,
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
	}, []string{"pool"})
	p.failed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nimbus_warm_pool_refill_failures_total",
		Help: "Warm sandboxes that could not be made (retried with backoff)." + help,
	}, []string{"pool"})
	p.readyGa = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "nimbus_warm_pool_ready",
		Help: "Warm sandboxes ready now." + help,
	}, []string{"pool"})
	if reg != nil {
		for _, c := range []prometheus.Collector{p.takes, p.fills, p.failed, p.readyGa} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("warm pool metrics: %w", err)
			}
		}
	}
	for _, w := range specs {
		p.readyGa.WithLabelValues(poolName(w.Image)).Set(0)
		for slot := range w.Slots {
			p.want(warmKey{slot, w.Image})
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	p.stop = stop
	go p.fill(ctx)
	return p, nil
}

func poolName(image string) string { return "docker:" + image }

// want queues k to be made, unless it is queued or ready.
func (p *warmPool) want(k warmKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.queued[k] || p.ready[k] != nil {
		return
	}
	p.queued[k] = true
	p.wanted = append(p.wanted, k)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// fill makes the wanted containers, one at a time, until ctx ends.
func (p *warmPool) fill(ctx context.Context) {
	defer close(p.done)
	backoff := warmRetryMin
	for {
		p.mu.Lock()
		var k warmKey
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
		c, err := p.make(ctx, k)
		pool := poolName(k.image)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.failed.WithLabelValues(pool).Inc()
			p.log.Warn("could not make a warm container; retrying", "image", k.image, "slot", k.slot, "in", backoff, "error", err)
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
			backoff = min(2*backoff, warmRetryMax)
			continue
		}
		backoff = warmRetryMin
		p.fills.WithLabelValues(pool).Observe(time.Since(start).Seconds())
		p.mu.Lock()
		delete(p.queued, k)
		if p.closed {
			p.mu.Unlock()
			p.e.destroy(context.Background(), c, p.log)
			return
		}
		p.ready[k] = c
		p.readyGa.WithLabelValues(pool).Inc()
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
}

// make makes k's container and checks its init waits.
func (p *warmPool) make(ctx context.Context, k warmKey) (*container, error) {
	w := p.specs[k.image]
	uid, gid := p.e.Identity(k.slot)
	c, err := p.e.makeContainer(ctx, containerParams{
		name: "warm-" + strconv.Itoa(k.slot), image: w.Image, limits: w.Limits, uid: uid, gid: gid, netFiles: true,
		labels: map[string]string{labelWarm: strconv.Itoa(k.slot)},
	})
	if err != nil {
		return nil, err
	}
	if err := p.e.alive(ctx, c); err != nil {
		p.e.destroy(context.WithoutCancel(ctx), c, p.log)
		return nil, fmt.Errorf("warm container %s: %w", c.short(), err)
	}
	return c, nil
}

// take hands spec a ready container made for it, or nil: the job then
// makes its own. A taken container is replaced.
func (p *warmPool) take(ctx context.Context, spec executor.Spec) *container {
	if p == nil {
		return nil
	}
	w, ok := p.specs[spec.Container.Image]
	if !ok {
		return nil
	}
	pool := poolName(w.Image)
	limits := spec.Limits
	limits.Disk = 0
	k := warmKey{spec.Slot, w.Image}
	if spec.Container.ReadOnlyRoot || len(spec.Binds) > 0 || limits != w.Limits || spec.Slot >= w.Slots {
		p.takes.WithLabelValues(pool, "miss").Inc()
		return nil
	}
	p.mu.Lock()
	c := p.ready[k]
	delete(p.ready, k)
	p.mu.Unlock()
	if c == nil {
		p.takes.WithLabelValues(pool, "miss").Inc()
		p.want(k)
		return nil
	}
	p.readyGa.WithLabelValues(pool).Dec()
	p.want(k)
	if err := p.e.alive(ctx, c); err != nil {
		p.log.Warn("a warm container died while it waited; making the job's own", "container", c.short(), "error", err)
		p.e.destroy(context.WithoutCancel(ctx), c, p.log)
		p.takes.WithLabelValues(pool, "miss").Inc()
		return nil
	}
	p.takes.WithLabelValues(pool, "hit").Inc()
	return c
}

// waitFull blocks until every pool is full (or ctx ends).
func (p *warmPool) waitFull(ctx context.Context) error {
	if p == nil {
		return nil
	}
	for {
		p.mu.Lock()
		n, want := len(p.ready), 0
		for _, w := range p.specs {
			want += w.Slots
		}
		ch := p.changed
		p.mu.Unlock()
		if n == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-ch:
		}
	}
}

// close stops the filling and removes the ready containers.
func (p *warmPool) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	ready := p.ready
	p.ready = map[warmKey]*container{}
	p.mu.Unlock()
	p.stop()
	<-p.done
	for _, c := range ready {
		p.e.destroy(context.Background(), c, p.log)
	}
}
