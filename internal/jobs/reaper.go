package jobs

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nimbus-build/nimbus/internal/store"
)

// deliveryRetention is how long webhook delivery ids are remembered.
// GitHub redelivers on request, days later at most.
const deliveryRetention = 30 * 24 * time.Hour

// runReaperLoop collects expired leases until ctx ends.
func (s *Service) runReaperLoop(ctx context.Context) error {
	t := time.NewTicker(s.cfg.ReapInterval)
	defer t.Stop()
	lastPrune := time.Time{}
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := s.Reap(ctx); err != nil {
			failures++
			s.log.Warn("reap expired leases", "err", err, "failures", failures)
			// Back off with jitter while the database is unwell.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Duration(min(failures, 30)) * s.cfg.ReapInterval * time.Duration(1+rand.IntN(2))):
			}
			continue
		}
		failures = 0
		if now := s.now(); now.Sub(lastPrune) > time.Hour {
			lastPrune = now
			if n, err := s.store.Deliveries().Prune(ctx, now.Add(-deliveryRetention)); err != nil {
				s.log.Warn("prune webhook deliveries", "err", err)
			} else if n > 0 {
				s.log.Info("pruned webhook deliveries", "count", n)
			}
		}
	}
}

// Reap handles every lease expired by now, once: requeued with one more
// attempt, failed when none is left, cancelled when a cancel was pending.
func (s *Service) Reap(ctx context.Context) ([]store.Expired, error) {
	now := s.now()
	expired, err := s.store.Jobs().ExpireLeases(ctx, now)
	if err != nil {
		return nil, err
	}
	for _, e := range expired {
		result := string(e.Job.State)
		if e.Requeued {
			result = "requeued"
			s.notify.Notify(queueTopic(e.Job.OrgID))
		}
		s.runnerSpent(e.Job)
		s.m.expired.WithLabelValues(result).Inc()
		s.m.transitions.WithLabelValues(string(e.Job.State)).Inc()
		if !e.Requeued {
			s.m.finished(e.Job) // failed or cancelled by expiry: it ended
		}
		s.notify.Notify(Topic(e.Job.ID))
		s.notify.Notify(OrgTopic(e.Job.OrgID))
		s.audit.Record(ctx, store.AuditEntry{At: now, OrgID: e.Job.OrgID, Actor: "system", Action: "job.lease_expired", Target: e.Job.ID,
			Detail: map[string]string{"agent_id": e.Job.AgentID, "fence": strconv.FormatInt(e.Job.Fence, 10),
				"attempt": strconv.Itoa(e.Job.Attempt), "result": result}})
		s.log.Info("lease expired", "job_id", e.Job.ID, "agent_id", e.Job.AgentID, "fence", e.Job.Fence, "result", result)
	}
	return expired, nil
}
