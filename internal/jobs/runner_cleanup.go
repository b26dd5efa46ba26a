package jobs

import (
	"context"
	"time"

	"github.com/nimbus-build/nimbus/internal/store"
)

// runnerSpent queues the runner of a GitHub job whose lease has ended for
// removal from GitHub. A runner that ran its one job has already removed
// itself (removal then finds nothing); one that never got a job — its job
// was taken by another runner or cancelled, its agent died, it timed out —
// would otherwise stay registered and offline.
func (s *Service) runnerSpent(j store.Job) {
	if j.Source != store.SourceGitHub || j.RunnerID == 0 || s.runners == nil {
		return
	}
	select {
	case s.spent <- j:
	default:
		s.log.Warn("runner cleanup queue full; GitHub will remove the offline runner itself", "job_id", j.ID, "runner_id", j.RunnerID)
	}
}

// runRunnerCleanupLoop removes spent runners until ctx ends.
func (s *Service) runRunnerCleanupLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case j := <-s.spent:
			s.removeRunner(ctx, j)
		}
	}
}

func (s *Service) removeRunner(ctx context.Context, j store.Job) {
	for attempt := range 3 {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := s.runners.RemoveRunner(rctx, j, j.RunnerID)
		cancel()
		if err == nil {
			s.log.Debug("runner removed", "job_id", j.ID, "runner_id", j.RunnerID)
			return
		}
		s.log.Warn("remove runner", "job_id", j.ID, "runner_id", j.RunnerID, "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(attempt+1) * 2 * time.Second):
		}
	}
}
