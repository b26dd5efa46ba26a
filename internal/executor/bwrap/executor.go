package bwrap

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/workspace"
)

// Executor runs jobs in bubblewrap sandboxes. It is safe for concurrent use.
type Executor struct {
	opts   Options
	log    *slog.Logger
	host   hostLayout
	asRoot bool // the agent is root: jobs get their own unprivileged uids
}

var _ executor.Executor = (*Executor)(nil)

// New returns an Executor. It checks opts but not bubblewrap itself: call
// Check for that.
func New(opts Options) (*Executor, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	host, err := probeHost("/")
	if err != nil {
		return nil, err
	}
	return &Executor{
		opts:   opts,
		log:    opts.Logger.With("component", "executor", "executor", "bwrap"),
		host:   host,
		asRoot: os.Geteuid() == 0,
	}, nil
}

// Name is "bwrap".
func (e *Executor) Name() string { return "bwrap" }

// Identity returns the host uid and gid a job in slot runs as (the same
// inside the sandbox): Options.UIDBase+slot when the agent is root, the
// agent's own otherwise. Callers preparing host directories for a job, such
// as a workspace.CloneTree of a runner directory, give them this owner.
func (e *Executor) Identity(slot int) (uid, gid int, err error) {
	if slot < 0 {
		return 0, 0, fmt.Errorf("slot %d is negative", slot)
	}
	if !e.asRoot {
		return os.Getuid(), os.Getgid(), nil
	}
	if slot > maxUID-e.opts.UIDBase {
		return 0, 0, fmt.Errorf("slot %d is too large for UIDBase %d", slot, e.opts.UIDBase)
	}
	id := e.opts.UIDBase + slot
	return id, id, nil
}

// Run runs spec in a fresh sandbox; see the package documentation for what
// the sandbox holds. It returns once every process of the sandbox is gone
// and all output has been copied to spec.Output. A job stopped before it
// started (context done) has Result.Cause set and no error.
func (e *Executor) Run(ctx context.Context, spec executor.Spec) (executor.Result, error) {
	res := executor.Result{ExitCode: -1}
	if ctx.Err() != nil {
		res.Cause = context.Cause(ctx)
		return res, nil
	}
	uid, gid, err := e.Identity(spec.Slot)
	if err != nil {
		return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
	}
	log := e.log.With("job_id", spec.JobID, "slot", spec.Slot)
	ws, err := workspace.Create(e.opts.WorkRoot, spec.JobID, uid, gid)
	if err != nil {
		return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
	}
	if e.opts.KeepWorkspace {
		log.Info("keeping workspace", "path", ws)
	} else {
		defer func() {
			if err := workspace.Remove(ws); err != nil {
				log.Error("remove workspace", "error", err)
			}
		}()
	}
	args, err := buildArgs(invocation{
		Argv:      spec.Argv,
		Env:       spec.Env,
		Binds:     spec.Binds,
		Workspace: ws,
		Host:      e.host,
		Etc:       e.opts.Etc,
		Network:   networkNone,
	})
	if err != nil {
		return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
	}
	out := spec.Output
	if out == nil {
		out = io.Discard
	}
	var cred *syscall.Credential
	if e.asRoot {
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}

	runCtx, cancel := runContext(ctx, spec.Timeout)
	defer cancel()
	p, err := startSandbox(e.opts.BwrapPath, args, newAccounts(uid, gid), cred, out, log)
	if err != nil {
		return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
	}
	res.Started = time.Now()
	res.ExitCode, res.Cause, err = p.supervise(runCtx)
	res.Finished = time.Now()
	if err != nil {
		return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
	}
	return res, nil
}

// runContext bounds a run by timeout (none when zero), with
// executor.ErrTimeout as the cause.
func runContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout > 0 {
		return context.WithTimeoutCause(ctx, timeout, executor.ErrTimeout)
	}
	return context.WithCancel(ctx)
}
