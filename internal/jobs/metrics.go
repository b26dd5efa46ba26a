package jobs

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nimbus-build/nimbus/internal/store"
)

// metrics are the job loop's Prometheus metrics. Labels have bounded
// values only: outcomes and states, never ids.
type metrics struct {
	webhooks    *prometheus.CounterVec
	transitions *prometheus.CounterVec
	leaseWait   prometheus.Histogram
	expired     *prometheus.CounterVec
	// queue and run are by the job's label set (labelValues bounds it)
	// and, for run, by how the job ended.
	queue  *prometheus.HistogramVec
	run    *prometheus.HistogramVec
	labels *labelValues
}

func newMetrics(reg prometheus.Registerer, st store.Store, log *slog.Logger) *metrics {
	m := &metrics{
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_webhooks_total",
			Help: "GitHub webhook deliveries by outcome (created, updated, duplicate, ignored, pong, rejected).",
		}, []string{"outcome"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_jobs_transitions_total",
			Help: "Job state transitions by the state entered.",
		}, []string{"state"}),
		leaseWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "nimbus_jobs_lease_latency_seconds",
			Help:    "Time from a job becoming runnable to its lease.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
		}),
		expired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nimbus_jobs_leases_expired_total",
			Help: "Expired leases by what the reaper did (requeued, failed, cancelled).",
		}, []string{"result"}),
		queue: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nimbus_job_queue_seconds",
			Help:    "Time from a job's creation (a webhook, a submission) or its not-before time to each lease, by its label set (sorted, comma-joined; at most 50 sets, then \"other\").",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 16),
		}, []string{"labels"}),
		run: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "nimbus_job_run_seconds",
			Help:    "Time from a job's start to its end, by its label set (as nimbus_job_queue_seconds) and the state it ended in.",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 16),
		}, []string{"labels", "state"}),
		labels: newLabelValues(maxLabelSets),
	}
	if reg != nil {
		reg.MustRegister(m.webhooks, m.transitions, m.leaseWait, m.expired, m.queue, m.run, &queueCollector{st: st, log: log})
	}
	return m
}

// leased observes a job's time in the queue, up to its lease at now.
func (m *metrics) leased(j store.Job, now time.Time) {
	ready := j.NotBefore
	if ready.Before(j.CreatedAt) {
		ready = j.CreatedAt
	}
	wait := max(now.Sub(ready), 0).Seconds()
	m.leaseWait.Observe(wait)
	m.queue.WithLabelValues(m.labels.of(j.Labels)).Observe(wait)
}

// finished observes a finished job's run time (none for a job that never
// started: cancelled in the queue, or failed before it ran).
func (m *metrics) finished(j store.Job) {
	if j.StartedAt.IsZero() || j.FinishedAt.IsZero() {
		return
	}
	m.run.WithLabelValues(m.labels.of(j.Labels), string(j.State)).Observe(max(j.FinishedAt.Sub(j.StartedAt), 0).Seconds())
}

// queueCollector reports how many jobs are queued, leased and running,
// read from the database at scrape time so every replica agrees.
type queueCollector struct {
	st  store.Store
	log *slog.Logger
}

var jobsDesc = prometheus.NewDesc("nimbus_jobs", "Jobs that are not finished, by state (queue depth is state=queued).", []string{"state"}, nil)

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- jobsDesc }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.st.Jobs().CountByState(ctx)
	if err != nil {
		c.log.Warn("count jobs for metrics", "err", err)
		return
	}
	for _, s := range []store.JobState{store.JobQueued, store.JobLeased, store.JobRunning} {
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}
