// Package logs is where jobs' output lives: ingest (an agent's upload is
// checked against its lease through the jobs service, then appended),
// the per-job limit and the truncation notice, storage behind Store
// (SQLite and PostgreSQL today, through internal/store/sqlstore), and
// reading: a page after a cursor, or a live tail that follows a running
// job until it ends.
package logs

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/notify"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Config tunes the log service.
type Config struct {
	// MaxBytes bounds the output kept for one job (all its attempts);
	// past it the log ends with Notice. Zero: no limit.
	MaxBytes int64
	// PollInterval bounds how long a tail goes without reading the store
	// (in case a wake-up from another replica was lost).
	PollInterval time.Duration
}

// DefaultConfig is what `nimbus up` runs with.
func DefaultConfig() Config {
	return Config{MaxBytes: 64 << 20, PollInterval: time.Second}
}

// Options are the Service's dependencies.
type Options struct {
	Store Store
	// Jobs checks leases and jobs' states.
	Jobs   *jobs.Service
	Config Config
	// Notifier wakes tails when output arrives or a job ends: the same
	// one the jobs service notifies. Default: a new one.
	Notifier *notify.Notifier
	Logger   *slog.Logger
	Now      func() time.Time
}

// Service ingests and serves jobs' output. It is safe for concurrent use.
type Service struct {
	store  Store
	jobs   *jobs.Service
	cfg    Config
	notify *notify.Notifier
	log    *slog.Logger
	now    func() time.Time
	locks  keyedMutex
}

// New builds a Service.
func New(o Options) (*Service, error) {
	if o.Store == nil || o.Jobs == nil {
		return nil, errors.New("logs: a store and the jobs service are needed")
	}
	if o.Config.MaxBytes < 0 {
		return nil, errors.New("logs: negative MaxBytes")
	}
	if o.Config.PollInterval <= 0 {
		o.Config.PollInterval = time.Second
	}
	if o.Notifier == nil {
		o.Notifier = notify.New()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{store: o.Store, jobs: o.Jobs, cfg: o.Config, notify: o.Notifier,
		log: o.Logger.With("component", "logs"), now: o.Now}, nil
}

// Config returns the configuration in force.
func (s *Service) Config() Config { return s.cfg }

// Append stores chunks of a job's output that the agent sent under its
// lease (fence); their Seq and Data are used, the rest is filled in. A
// chunk stored already is kept once and counts once. full reports that
// the job's log has reached Config.MaxBytes: nothing more will be kept,
// and the agent may stop sending.
//
// The lease is checked first, through the jobs service (store.ErrStaleFence,
// store.ErrFinished); the append itself is not in the jobs table's
// transaction. Uploads of one job are applied one at a time in this
// process; an agent sends them one at a time anyway.
func (s *Service) Append(ctx context.Context, agent store.Agent, job string, fence int64, chunks []Chunk) (full bool, err error) {
	j, err := s.jobs.CheckLease(ctx, agent, job, fence)
	if err != nil {
		return false, err
	}
	unlock := s.locks.lock(job)
	defer unlock()
	keys := make([]Key, len(chunks))
	for i := range chunks {
		keys[i] = Key{Fence: fence, Seq: chunks[i].Seq}
	}
	used, stored, err := s.store.Stored(ctx, j.OrgID, job, keys)
	if err != nil {
		return false, err
	}
	seen := make(map[Key]bool, len(stored)+len(chunks))
	for _, k := range stored {
		seen[k] = true
	}
	now := s.now()
	fresh := make([]Chunk, 0, len(chunks))
	for _, c := range chunks {
		k := Key{Fence: fence, Seq: c.Seq}
		if seen[k] {
			continue
		}
		seen[k] = true
		fresh = append(fresh, Chunk{Org: j.OrgID, Job: job, Fence: fence, Seq: c.Seq, Data: c.Data, At: now})
	}
	keep := admit(used, s.cfg.MaxBytes, fresh)
	if len(keep) > 0 {
		if _, err := s.store.Append(ctx, keep); err != nil {
			return false, err
		}
		s.notify.Notify(jobs.Topic(job))
	}
	for _, c := range keep {
		used += c.Counted
	}
	return s.cfg.MaxBytes > 0 && used >= s.cfg.MaxBytes, nil
}

// Follow calls fn with org's job's output after the cursor, in order, as
// it arrives, until the job has finished and everything is delivered
// (follow) or until what is stored now is delivered (!follow). It returns
// the context's error when the context ends first (notify.LongPoll).
func (s *Service) Follow(ctx context.Context, org, job string, after Cursor, follow bool, fn func([]Chunk) error) error {
	if _, err := s.jobs.Get(ctx, org, job); err != nil {
		return err
	}
	// drain delivers everything stored after the cursor.
	drain := func() error {
		for {
			chunks, err := s.store.Read(ctx, org, job, after, 1000)
			if err != nil || len(chunks) == 0 {
				return err
			}
			if err := fn(chunks); err != nil {
				return err
			}
			last := chunks[len(chunks)-1]
			after = Cursor{Fence: last.Fence, Seq: last.Seq}
		}
	}
	return s.notify.LongPoll(ctx, jobs.Topic(job), notify.Forever, s.cfg.PollInterval, func() (bool, error) {
		if err := drain(); err != nil || !follow {
			return true, err
		}
		j, err := s.jobs.Get(ctx, org, job)
		if err != nil || !j.State.Terminal() {
			return false, err
		}
		// Chunks may have landed between the read and the state check:
		// read once more before ending.
		return true, drain()
	})
}
