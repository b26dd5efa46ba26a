package jobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Lease is a job handed to an agent.
type Lease struct {
	Job store.Job
	// RunnerName and JITConfig are set for GitHub jobs: the agent starts an
	// ephemeral runner with them. The config is never stored.
	RunnerName string
	JITConfig  string
}

// Lease waits up to wait for a job the agent may run and leases it. It
// returns (nil, nil) when none came in time, and the context's error when
// it ended first (notify.LongPoll).
func (s *Service) Lease(ctx context.Context, agent store.Agent, wait time.Duration) (*Lease, error) {
	var l *Lease
	err := s.notify.LongPoll(ctx, queueTopic(agent.OrgID), wait, s.cfg.PollInterval, func() (bool, error) {
		var err error
		l, err = s.tryLease(ctx, agent)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (s *Service) tryLease(ctx context.Context, agent store.Agent) (*Lease, error) {
	now := s.now()
	var j store.Job
	err := s.audit.Do(ctx, func(tx *audit.Tx) error {
		var err error
		j, err = tx.Jobs().Lease(ctx, store.LeaseRequest{
			OrgID: agent.OrgID, AgentID: agent.ID, Labels: agent.Labels, MaxJobs: agent.MaxJobs, TTL: s.cfg.LeaseTTL, Now: now,
		})
		if err != nil {
			return err
		}
		tx.Audit(store.AuditEntry{At: now, OrgID: j.OrgID, Actor: "agent:" + agent.ID, Action: "job.leased",
			Target: j.ID, Detail: map[string]string{"fence": strconv.FormatInt(j.Fence, 10), "attempt": strconv.Itoa(j.Attempt)}})
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.m.leased(j, now)
	s.m.transitions.WithLabelValues(string(store.JobLeased)).Inc()
	s.notify.Notify(OrgTopic(j.OrgID))
	s.log.Debug("leased", "job_id", j.ID, "agent_id", agent.ID, "fence", j.Fence)
	if j.Source != store.SourceGitHub {
		return &Lease{Job: j}, nil
	}
	return s.leaseRunner(ctx, agent, j)
}

// leaseRunner mints the runner of a GitHub job's lease. When GitHub cannot
// mint one now the lease is given back for a later try; when it never
// will (no App configured, installation gone), the job fails with the
// reason.
func (s *Service) leaseRunner(ctx context.Context, agent store.Agent, j store.Job) (*Lease, error) {
	name := RunnerName(j)
	var r Runner
	var err error
	if s.runners == nil {
		err = permanent(errors.New("no GitHub App is configured on this server"))
	} else {
		r, err = s.runners.MintRunner(ctx, j, name)
	}
	if err == nil {
		err = s.store.Jobs().SetRunner(ctx, j.ID, j.Fence, name, r.ID)
		if err != nil && r.ID != 0 {
			j.RunnerID = r.ID
			s.runnerSpent(j)
		}
	}
	if err == nil {
		j.RunnerName, j.RunnerID = name, r.ID
		return &Lease{Job: j, RunnerName: name, JITConfig: r.JITConfig}, nil
	}
	now := s.now()
	reason := "mint runner config: " + err.Error()
	var p permanentError
	if errors.As(err, &p) || j.Attempt+1 >= j.MaxAttempts {
		if _, ferr := s.finish(ctx, "system", agent.ID, j.ID, j.Fence, store.Outcome{State: store.JobFailed, Reason: reason}); ferr != nil {
			return nil, ferr
		}
		return nil, fmt.Errorf("lease %s: %w", j.ID, store.ErrNotFound)
	}
	backoff := time.Duration(5<<min(j.Attempt, 6)) * time.Second
	if _, rerr := s.store.Jobs().Release(ctx, j.ID, j.Fence, now.Add(backoff), reason, now); rerr != nil {
		return nil, rerr
	}
	s.notify.Notify(OrgTopic(j.OrgID))
	s.audit.Record(ctx, store.AuditEntry{At: now, OrgID: j.OrgID, Actor: "system", Action: "job.released", Target: j.ID,
		Detail: map[string]string{"reason": reason}})
	s.log.Warn("runner config not minted; job requeued", "job_id", j.ID, "err", err, "retry_in", backoff)
	return nil, fmt.Errorf("lease %s: %w", j.ID, store.ErrNotFound)
}

// RunnerName is the name of the ephemeral runner started for a job's
// current lease: unique per lease, at most 64 characters.
func RunnerName(j store.Job) string {
	id := strings.TrimPrefix(j.ID, "job_")
	return "nimbus-" + id + "-" + strconv.FormatInt(j.Fence, 10)
}

type permanentError struct{ error }

func (p permanentError) Unwrap() error { return p.error }

// permanent marks an error that retrying will not fix.
func permanent(err error) error { return permanentError{err} }

// Permanent is permanent for RunnerMinter implementations.
func Permanent(err error) error { return permanent(err) }

// LeaseRef names a lease an agent holds.
type LeaseRef struct {
	JobID string
	Fence int64
}

// LeaseState is the answer to a LeaseRef in Sync.
type LeaseState struct {
	JobID     string
	Status    string // ok, cancel or lost
	ExpiresAt time.Time
}

// Sync renews every lease of the agent it names. When all are fine it
// waits up to wait for one of them to be cancelled, then answers; when
// the context ends first it returns its error (notify.LongPoll).
func (s *Service) Sync(ctx context.Context, agent store.Agent, refs []LeaseRef, wait time.Duration) ([]LeaseState, error) {
	if err := s.store.Agents().Touch(ctx, agent.ID, s.now()); err != nil {
		return nil, err
	}
	wait = min(wait, s.cfg.LeaseTTL/2)
	states := make([]LeaseState, len(refs))
	err := s.notify.LongPoll(ctx, agentTopic(agent.ID), wait, s.cfg.PollInterval, func() (bool, error) {
		quiet := true
		for i, ref := range refs {
			st, err := s.renew(ctx, agent, ref)
			if err != nil {
				return false, err
			}
			states[i] = st
			quiet = quiet && st.Status == "ok"
		}
		return !quiet, nil
	})
	if err != nil {
		return nil, err
	}
	return states, nil
}

func (s *Service) renew(ctx context.Context, agent store.Agent, ref LeaseRef) (LeaseState, error) {
	j, err := s.store.Jobs().Renew(ctx, ref.JobID, agent.ID, ref.Fence, s.cfg.LeaseTTL, s.now())
	switch {
	case errors.Is(err, store.ErrStaleFence), errors.Is(err, store.ErrFinished), errors.Is(err, store.ErrNotFound):
		return LeaseState{JobID: ref.JobID, Status: "lost"}, nil
	case err != nil:
		return LeaseState{}, err
	case j.CancelRequested:
		return LeaseState{JobID: j.ID, Status: "cancel", ExpiresAt: j.LeaseExpiresAt}, nil
	}
	return LeaseState{JobID: j.ID, Status: "ok", ExpiresAt: j.LeaseExpiresAt}, nil
}

// Start records that the agent started the job's workload.
func (s *Service) Start(ctx context.Context, agent store.Agent, id string, fence int64) (store.Job, error) {
	now := s.now()
	j, err := s.store.Jobs().Start(ctx, id, agent.ID, fence, now)
	if err != nil {
		return j, err
	}
	s.m.transitions.WithLabelValues(string(store.JobRunning)).Inc()
	s.audit.Record(ctx, store.AuditEntry{At: now, OrgID: j.OrgID, Actor: "agent:" + agent.ID, Action: "job.started", Target: id,
		Detail: map[string]string{"fence": strconv.FormatInt(fence, 10)}})
	s.notify.Notify(Topic(id))
	s.notify.Notify(OrgTopic(j.OrgID))
	return j, nil
}

// CheckLease returns the job when the agent holds its live lease with
// this fence, and store.ErrStaleFence or store.ErrFinished when it does
// not (or no longer) hold it. Reports that are not state changes (log
// uploads) check here first.
func (s *Service) CheckLease(ctx context.Context, agent store.Agent, id string, fence int64) (store.Job, error) {
	return s.store.Jobs().CheckLease(ctx, id, agent.ID, fence)
}

// Complete ends the agent's lease of a job with an outcome, exactly once.
// A report under a stale fence is refused and recorded
// (job.stale_report_refused).
func (s *Service) Complete(ctx context.Context, agent store.Agent, id string, fence int64, o store.Outcome) (store.Job, error) {
	j, err := s.finish(ctx, "agent:"+agent.ID, agent.ID, id, fence, o)
	if errors.Is(err, store.ErrStaleFence) {
		s.audit.Record(ctx, store.AuditEntry{OrgID: agent.OrgID, Actor: "agent:" + agent.ID, Action: "job.stale_report_refused", Target: id,
			Detail: map[string]string{"fence": strconv.FormatInt(fence, 10)}})
	}
	return j, err
}

func (s *Service) finish(ctx context.Context, actor, agentID, id string, fence int64, o store.Outcome) (store.Job, error) {
	now := s.now()
	var j store.Job
	err := s.audit.Do(ctx, func(tx *audit.Tx) error {
		var err error
		j, err = tx.Jobs().Finish(ctx, id, agentID, fence, o, now)
		if err != nil {
			return err
		}
		d := map[string]string{"state": string(o.State), "fence": strconv.FormatInt(fence, 10)}
		if o.ExitCode != nil {
			d["exit_code"] = strconv.Itoa(*o.ExitCode)
		}
		if o.Reason != "" {
			d["reason"] = o.Reason
		}
		tx.Audit(store.AuditEntry{At: now, OrgID: j.OrgID, Actor: actor, Action: "job.finished", Target: id, Detail: d})
		return nil
	})
	if err != nil {
		return j, err
	}
	s.m.transitions.WithLabelValues(string(j.State)).Inc()
	s.m.finished(j)
	s.notify.Notify(Topic(id))
	s.notify.Notify(OrgTopic(j.OrgID))
	s.runnerSpent(j)
	return j, nil
}
