package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// Pacing of the sync loop.
const (
	// minSyncInterval is the shortest time between two heartbeats that
	// the server answered at once (it does when a lease is being
	// cancelled).
	minSyncInterval = time.Second
	// maxSyncBackoff bounds the wait after a failed heartbeat: leases are
	// at stake.
	maxSyncBackoff = 5 * time.Second
)

// errLeasesChanged interrupts a heartbeat to send the new set of leases.
var errLeasesChanged = errors.New("the set of leases changed")

// runSyncLoop is the heartbeat: it renews every live lease and long-polls
// for their cancellation, and without jobs still reports every
// IdleHeartbeat. It returns nil when ctx ends, and an error only when it
// is fatal to the agent. Leases it fails to renew expire by themselves
// (leaseTable), killing their workloads.
func (a *Agent) runSyncLoop(ctx context.Context) error {
	var lastOK time.Time
	for failures := 0; ; {
		refs, minTTL, changed := a.leases.snapshot()
		// A heartbeat may be cut short to include a new lease at once,
		// unless the leases were last renewed long enough ago that it
		// must be let through.
		interruptible := len(refs) == 0 || time.Since(lastOK) < minTTL/3
		began := time.Now()
		renewed, err := a.syncStep(ctx, refs, minTTL, changed, interruptible)
		switch {
		case ctx.Err() != nil:
			return nil
		case fatal(err):
			return err
		case err != nil:
			a.log.Warn("heartbeat failed; will retry", "err", err, "failures", failures+1, "leases", len(refs))
			if !pause(ctx, apiclient.Backoff(failures, min(a.cfg.MaxBackoff, maxSyncBackoff))) {
				return nil
			}
			failures++
			continue
		}
		failures = 0
		if renewed {
			lastOK = began
		}
		next := min(minSyncInterval, minTTL/3)
		if len(refs) == 0 {
			// ±10% so that a fleet does not beat in step.
			next = a.cfg.IdleHeartbeat * time.Duration(90+rand.IntN(21)) / 100
		}
		t := time.NewTimer(next - time.Since(began))
		select {
		case <-t.C:
		case <-changed:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// syncStep sends one heartbeat for refs and applies its answer; it reports
// whether an answer came. When interruptible, a change of the lease set
// cuts the long poll short (no answer, no error).
func (a *Agent) syncStep(ctx context.Context, refs []apiv1.LeaseRef, minTTL time.Duration, changed <-chan struct{}, interruptible bool) (bool, error) {
	var wait time.Duration
	if len(refs) > 0 {
		wait = min(a.cfg.SyncWait, minTTL/3).Truncate(time.Second)
	}
	reqCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if interruptible {
		watching := make(chan struct{})
		defer func() { cancel(nil); <-watching }()
		go func() {
			defer close(watching)
			select {
			case <-changed:
				cancel(errLeasesChanged)
			case <-reqCtx.Done():
			}
		}()
	}
	sentAt := time.Now()
	synced, err := a.cp.sync(reqCtx, apiv1.Sync{Leases: refs, WaitSeconds: int(wait / time.Second)})
	if err != nil {
		if ctx.Err() == nil && errors.Is(context.Cause(reqCtx), errLeasesChanged) {
			return false, nil
		}
		return false, err
	}
	a.leases.apply(sentAt, synced.Leases)
	if synced.Disabled {
		return true, ErrDisabled
	}
	return true, nil
}
