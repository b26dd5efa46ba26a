package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// minLeaseInterval spaces lease requests that the server answers at once
// with no job.
const minLeaseInterval = time.Second

// spawnFunc starts a job runner for a lease in a slot, which the runner
// releases when it ends.
type spawnFunc func(lease apiv1.Lease, grantedAt time.Time, slot int)

// runLeaseLoop asks for jobs, one request at a time and only while a slot
// is free, and spawns a runner for each lease. It returns nil once ctx ends
// or GracefulStop is called (a lease request in flight is abandoned), and
// an error only when it is fatal to the agent.
func (a *Agent) runLeaseLoop(ctx context.Context, spawn spawnFunc) error {
	ctx, stop := a.untilGracefulStop(ctx)
	defer stop()
	for failures := 0; ; {
		slot, err := a.slots.acquire(ctx)
		if err != nil {
			return a.leasingStopped(ctx)
		}
		leased, err := a.leaseStep(ctx, slot, spawn)
		if !leased {
			a.slots.release(slot)
		}
		switch {
		case ctx.Err() != nil:
			return a.leasingStopped(ctx)
		case fatal(err):
			return err
		case err != nil:
			a.log.Warn("lease; will retry", "err", err, "failures", failures+1)
			if !pause(ctx, apiclient.Backoff(failures, a.cfg.MaxBackoff)) {
				return a.leasingStopped(ctx)
			}
			failures++
		default:
			failures = 0
		}
	}
}

// leaseStep makes one lease request for slot and spawns a runner when a
// job came; it reports whether one did.
func (a *Agent) leaseStep(ctx context.Context, slot int, spawn spawnFunc) (bool, error) {
	sent := time.Now()
	lease, err := a.cp.lease(ctx, a.cfg.LeaseWait)
	if err != nil {
		return false, err
	}
	if lease == nil {
		// A server that answers "no job" without waiting is not asked
		// again at once.
		if early := time.Since(sent); early < a.cfg.LeaseWait/2 {
			pause(ctx, min(a.cfg.LeaseWait/2, minLeaseInterval)-early)
		}
		return false, nil
	}
	grantedAt := time.Now()
	if err := checkLease(lease); err != nil {
		return false, err
	}
	spawn(*lease, grantedAt, a.slots.lowest(slot))
	return true, nil
}

// checkLease rejects a lease the agent could not honour.
func checkLease(l *apiv1.Lease) error {
	switch {
	case l.Job.ID == "":
		return errors.New("lease: the server sent a lease without a job id")
	case l.TTLSeconds <= 0:
		return fmt.Errorf("lease of job %s: the server sent ttl %d", l.Job.ID, l.TTLSeconds)
	}
	return nil
}

func (a *Agent) leasingStopped(ctx context.Context) error {
	if errors.Is(context.Cause(ctx), ErrGracefulStop) {
		a.log.Info("graceful stop: leasing no more jobs; running jobs finish")
	}
	return nil
}

// untilGracefulStop returns a context that also ends, with cause
// ErrGracefulStop, when GracefulStop is called; stop releases it.
func (a *Agent) untilGracefulStop(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-a.stopping:
			cancel(ErrGracefulStop)
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		cancel(nil)
		<-done
	}
}
