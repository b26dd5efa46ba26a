package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/executor"
)

// errJobsDone ends the sync and refresh loops once leasing has stopped
// and every job has ended.
var errJobsDone = errors.New("leasing stopped and every job ended")

// Agent is the host agent. Create it with New, then call Run once.
type Agent struct {
	cfg   Config
	cp    *controlPlane
	creds credentialFile
	slots *slotPool
	// leases is made by Run, with its logger, before its loops start.
	leases *leaseTable

	started  atomic.Bool
	stopOnce sync.Once
	stopping chan struct{} // closed by GracefulStop

	// log is scoped with the agent's id by Run before its loops start.
	log *slog.Logger

	mu   sync.Mutex
	cred credential // the current credential
}

// New validates cfg and returns an Agent. It starts nothing and touches
// neither the network nor the disk.
func New(cfg Config) (*Agent, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("component", "agent")
	return &Agent{
		cfg:      cfg,
		cp:       newControlPlane(cfg),
		creds:    credentialFile{dir: cfg.StateDir},
		slots:    newSlotPool(cfg.MaxJobs),
		stopping: make(chan struct{}),
		log:      log,
	}, nil
}

// Run enrolls or loads the agent's credential, registers, then leases and
// runs jobs until it is stopped:
//
//   - after GracefulStop, once every running job has finished and been
//     reported, Run returns nil;
//   - when ctx ends (the hard stop), Run kills every workload, reports
//     none of them (their leases expire and the control plane requeues
//     them), and returns ctx's cause;
//   - on an error fatal to the agent (ErrUnauthenticated, ErrDisabled, a
//     start-up error), Run stops like a hard stop and returns it.
func (a *Agent) Run(ctx context.Context) error {
	if !a.started.CompareAndSwap(false, true) {
		return errors.New("agent: Run called more than once")
	}
	defer a.closeExecutor()
	// A graceful stop during start-up, with no job running yet, ends Run.
	setUpCtx, stopSetUp := a.untilGracefulStop(ctx)
	err := a.setUp(setUpCtx)
	stopSetUp()
	switch {
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case errors.Is(err, ErrGracefulStop):
		a.log.Info("stopped gracefully during start-up")
		return nil
	case err != nil:
		return err
	}
	a.log.Info("agent running", "labels", a.cfg.Labels, "max_jobs", a.cfg.MaxJobs, "executor", a.cfg.Executor.Name())
	if root := a.cfg.logSpoolRoot(); root != "" {
		if err := sweepSpools(root); err != nil {
			a.log.Warn("remove the last run's log spools", "err", err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	// The sync and refresh loops outlive leasing: running jobs need them.
	loopsCtx, endLoops := context.WithCancelCause(gctx)
	defer endLoops(nil)
	g.Go(func() error { return a.runRefreshLoop(loopsCtx) })
	g.Go(func() error { return a.runSyncLoop(loopsCtx) })
	if a.cfg.RBS != nil {
		g.Go(func() error { return a.runSessionsLoop(loopsCtx) })
	}
	g.Go(func() error {
		var jobs sync.WaitGroup
		err := a.runLeaseLoop(gctx, func(lease apiv1.Lease, grantedAt time.Time, slot int) {
			jobs.Add(1)
			g.Go(func() error {
				defer jobs.Done()
				defer a.slots.release(slot)
				return a.newJobRunner(lease, grantedAt, slot).run(gctx)
			})
		})
		if err != nil {
			return err // fatal: the group's context ends, killing the jobs
		}
		jobs.Wait()
		endLoops(errJobsDone)
		return nil
	})
	err = g.Wait()
	if err == nil {
		err = context.Cause(ctx)
	}
	a.log.Info("agent stopped")
	return err
}

// closeExecutor releases what the executor holds for the agent's life
// (bwrap: the slots' filesystems, its cgroups; docker: its warm
// containers), once every job has ended.
func (a *Agent) closeExecutor() {
	for _, ex := range []executor.Executor{a.cfg.Executor, a.cfg.Containers} {
		if c, ok := ex.(io.Closer); ok {
			if err := c.Close(); err != nil {
				a.log.Error("close the executor", "executor", ex.Name(), "err", err)
			}
		}
	}
}

// GracefulStop makes Run lease no more jobs and return once the running
// ones have finished and been reported. It does not wait; it may be called
// more than once, and before Run.
func (a *Agent) GracefulStop() {
	a.stopOnce.Do(func() { close(a.stopping) })
}

func (a *Agent) newJobRunner(lease apiv1.Lease, grantedAt time.Time, slot int) *jobRunner {
	return &jobRunner{
		cfg:       a.cfg,
		cp:        a.cp,
		leases:    a.leases,
		lease:     lease,
		grantedAt: grantedAt,
		slot:      slot,
		log:       a.log.With("job_id", lease.Job.ID, "fence", lease.Fence, "slot", slot),
	}
}

// credential returns the current credential.
func (a *Agent) credential() credential {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cred
}

// useCredential makes c the credential of every later call.
func (a *Agent) useCredential(c credential) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cred = c
	a.cp.setCredential(c.Token)
}
