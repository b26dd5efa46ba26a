// Package jobs is the job loop's control-plane side: it turns API
// submissions and GitHub webhooks into jobs, leases them to agents with
// fencing tokens, follows their leases and completion, cancels them,
// and requeues the leases that expire. The state machine itself is
// enforced by the store (one conditional statement per transition); this
// package decides which transition to ask for and records each in the
// audit log.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/notify"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Config tunes the job loop.
type Config struct {
	// LeaseTTL is how long a lease lives without renewal.
	LeaseTTL time.Duration
	// MaxAttempts is how many leases a job may have expire under it
	// before it fails.
	MaxAttempts int
	// DefaultTimeout and MaxTimeout bound a job's run time.
	DefaultTimeout time.Duration
	MaxTimeout     time.Duration
	// OrgJobRate and OrgJobBurst form each org's token bucket for new
	// jobs; jobs beyond it are deferred, never dropped. Zero rate: no limit.
	OrgJobRate  float64
	OrgJobBurst int
	// Pools are the label sets Nimbus serves: a GitHub job is taken only
	// when its labels are a subset of one pool's.
	Pools []Pool
	// ReapInterval is how often expired leases are collected.
	ReapInterval time.Duration
	// PollInterval bounds how long a long poll goes without re-reading
	// the database (in case a wake-up from another replica was lost).
	PollInterval time.Duration
}

// Pool is a named set of runner labels.
type Pool struct {
	Name   string
	Labels []string
}

// DefaultConfig is what `nimbus up` runs with.
func DefaultConfig() Config {
	return Config{
		LeaseTTL:       30 * time.Second,
		MaxAttempts:    3,
		DefaultTimeout: time.Hour,
		MaxTimeout:     24 * time.Hour,
		OrgJobRate:     50,
		OrgJobBurst:    500,
		Pools:          []Pool{{Name: "default", Labels: []string{"self-hosted", "linux", "x64", "nimbus"}}},
		ReapInterval:   time.Second,
		PollInterval:   time.Second,
	}
}

// Runner is an ephemeral GitHub runner registered for a lease.
type Runner struct {
	ID        int64
	JITConfig string
}

// RunnerMinter registers the ephemeral GitHub runner of a leased GitHub job
// (returning its just-in-time configuration) and removes it when the lease
// has ended.
type RunnerMinter interface {
	MintRunner(ctx context.Context, j store.Job, runnerName string) (Runner, error)
	// RemoveRunner deletes a runner; one that is already gone is no error.
	RemoveRunner(ctx context.Context, j store.Job, runnerID int64) error
}

// Service is the job loop. It is safe for concurrent use.
type Service struct {
	store   store.Store
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	notify  *notify.Notifier
	limiter *orgLimiter
	runners RunnerMinter
	m       *metrics
	audit   *audit.Log
	// rejectAudit bounds how many rejected webhooks are audited.
	rejectAudit *rate.Limiter
	// spent holds GitHub jobs whose lease ended, for their runner to be
	// removed from GitHub.
	spent chan store.Job
}

// Options are the Service's dependencies.
type Options struct {
	Store    store.Store
	Config   Config
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Runners mints runner configs for GitHub jobs; nil refuses them.
	Runners RunnerMinter
	// Notifier wakes long polls; connect it to a relay to wake the other
	// replicas' too. Default: a new one for this process.
	Notifier *notify.Notifier
	Now      func() time.Time
}

// New builds a Service.
func New(o Options) (*Service, error) {
	if o.Store == nil {
		return nil, errors.New("jobs: no store")
	}
	c := o.Config
	switch {
	case c.LeaseTTL < time.Second:
		return nil, fmt.Errorf("jobs: lease TTL %v: must be at least 1s", c.LeaseTTL)
	case c.MaxAttempts < 1:
		return nil, fmt.Errorf("jobs: max attempts %d: must be at least 1", c.MaxAttempts)
	case c.DefaultTimeout <= 0 || c.MaxTimeout < c.DefaultTimeout:
		return nil, fmt.Errorf("jobs: timeouts: default %v must be positive and at most the max %v", c.DefaultTimeout, c.MaxTimeout)
	}
	if c.ReapInterval <= 0 {
		c.ReapInterval = time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	if o.Notifier == nil {
		o.Notifier = notify.New()
	}
	return &Service{
		store: o.Store, cfg: c, log: log.With("component", "jobs"), now: now, notify: o.Notifier,
		limiter: newOrgLimiter(c.OrgJobRate, c.OrgJobBurst), runners: o.Runners,
		m: newMetrics(o.Registry, o.Store, log), spent: make(chan store.Job, 4096), audit: audit.New(o.Store, now, log),
		rejectAudit: rate.NewLimiter(1, 20),
	}, nil
}

// Config returns the configuration in force.
func (s *Service) Config() Config { return s.cfg }

// Submission is a job submitted through the API.
type Submission struct {
	OrgID          string
	CreatedBy      string // audit actor, e.g. "user:tok_…"
	Argv           []string
	Env            map[string]string
	Labels         []string
	Timeout        time.Duration
	Container      *store.Container
	IdempotencyKey string
}

// Submit creates a job from the API. A repeated IdempotencyKey returns the
// first job and created=false.
func (s *Service) Submit(ctx context.Context, sub Submission) (store.Job, bool, error) {
	if err := validateSubmission(&sub, s.cfg); err != nil {
		return store.Job{}, false, err
	}
	now := s.now()
	j := store.Job{
		ID: ids.New("job"), OrgID: sub.OrgID, Source: store.SourceAPI, State: store.JobQueued,
		Labels: sub.Labels, Spec: store.JobSpec{Argv: sub.Argv, Env: sub.Env, Timeout: sub.Timeout, Container: sub.Container},
		MaxAttempts: s.cfg.MaxAttempts, CreatedBy: sub.CreatedBy, CreatedAt: now, UpdatedAt: now,
	}
	if sub.IdempotencyKey != "" {
		j.Key = "api/" + sub.OrgID + "/" + sub.IdempotencyKey
	}
	var created bool
	err := s.audit.Do(ctx, func(tx *audit.Tx) error {
		var err error
		j.NotBefore = now
		j, created, err = tx.Jobs().Create(ctx, j)
		if err != nil || !created {
			return err
		}
		tx.Audit(store.AuditEntry{At: now, OrgID: j.OrgID, Actor: sub.CreatedBy, Action: "job.created",
			Target: j.ID, Detail: map[string]string{"source": store.SourceAPI}})
		return nil
	})
	if err != nil {
		return store.Job{}, false, err
	}
	if created {
		s.m.transitions.WithLabelValues(string(store.JobQueued)).Inc()
		s.notify.Notify(queueTopic(j.OrgID))
		s.notify.Notify(OrgTopic(j.OrgID))
	}
	return j, created, nil
}

// Get returns a job of org.
func (s *Service) Get(ctx context.Context, org, id string) (store.Job, error) {
	j, err := s.store.Jobs().Get(ctx, id)
	if err != nil {
		return j, err
	}
	if j.OrgID != org {
		return store.Job{}, fmt.Errorf("job %s: %w", id, store.ErrNotFound)
	}
	return j, nil
}

// List lists an org's jobs, newest first.
func (s *Service) List(ctx context.Context, f store.JobFilter) ([]store.Job, error) {
	return s.store.Jobs().List(ctx, f)
}

// Cancel cancels a job of org: a queued job at once; a leased or running
// one is flagged and its agent, woken by its sync long poll, stops it.
func (s *Service) Cancel(ctx context.Context, org, id, actor string) (store.Job, error) {
	now := s.now()
	var j store.Job
	err := s.audit.Do(ctx, func(tx *audit.Tx) error {
		var err error
		j, err = tx.Jobs().RequestCancel(ctx, org, id, "cancelled by "+actor, now)
		if err != nil {
			return err
		}
		tx.Audit(store.AuditEntry{At: now, OrgID: org, Actor: actor, Action: "job.cancel_requested",
			Target: id, Detail: map[string]string{"state": string(j.State)}})
		return nil
	})
	if err != nil {
		return j, err
	}
	s.notify.Notify(OrgTopic(org))
	if j.State == store.JobCancelled {
		s.m.transitions.WithLabelValues(string(store.JobCancelled)).Inc()
		s.notify.Notify(Topic(j.ID))
	}
	if j.State.Live() {
		s.notify.Notify(agentTopic(j.AgentID))
		s.notify.Notify(Topic(j.ID)) // the job's credentials die with the cancel
	}
	return j, nil
}

// Run runs the background loops (the lease reaper, the runner cleanup)
// until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.runReaperLoop(ctx) })
	g.Go(func() error { return s.runRunnerCleanupLoop(ctx) })
	return g.Wait()
}
