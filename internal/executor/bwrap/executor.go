// Package bwrap runs workloads in bubblewrap sandboxes.
//
// Each Run creates a fresh workspace, then runs the job with its own user,
// pid, ipc, uts, cgroup and network namespaces (no network: only a loopback
// interface that is down), a read-only /usr and a few read-only files of
// /etc, a fresh /proc, a minimal /dev, a private /tmp and the workspace at
// /workspace. The job's environment is exactly Spec.Env (plus PATH and
// HOME when absent) and it has no capabilities.
//
// Identity: when the agent runs as root, bwrap itself runs as the host uid
// and gid UIDBase+Slot, so that nothing in the sandbox is host root; when
// the agent is not root, bwrap runs as the agent. Either way the job sees
// the same non-zero uid inside.
//
// Ending: the sandbox's pid namespace is the unit that is killed. On
// context cancellation or Spec.Timeout, Run kills the namespace's init, and
// the kernel kills every other process in it, including daemonised ones;
// if the agent dies, --die-with-parent does the same. Run returns only when
// no process of the sandbox is left.
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

// Executor runs workloads in bubblewrap sandboxes. It is safe for
// concurrent use.
type Executor struct {
	opts Options
	root []rootEntry
	// asRoot: the agent is root, so sandboxes run as UIDBase+Slot.
	asRoot   bool
	uid, gid int // the agent's own ids, used when !asRoot
	log      *slog.Logger
}

var _ executor.Executor = (*Executor)(nil)

// New returns an Executor. It validates opts and inspects the host's root
// directory layout (merged /usr or not); it starts nothing. Call Check to
// learn whether sandboxes can be created on this host.
func New(opts Options) (*Executor, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	root, err := hostRootEntries("/")
	if err != nil {
		return nil, err
	}
	return &Executor{
		opts:   opts,
		root:   root,
		asRoot: os.Geteuid() == 0,
		uid:    os.Getuid(),
		gid:    os.Getgid(),
		log:    opts.Logger.With("component", "executor.bwrap"),
	}, nil
}

// Name returns "bwrap".
func (e *Executor) Name() string { return "bwrap" }

// IDs returns the host uid and gid that the sandbox of a job in slot runs
// as (the same inside the sandbox). Callers preparing files for a job, such
// as a workspace.CloneTree of a runner directory, own them by these ids.
func (e *Executor) IDs(slot int) (uid, gid int) {
	if !e.asRoot {
		return e.uid, e.gid
	}
	return e.opts.UIDBase + slot, e.opts.UIDBase + slot
}

// maxSlot is the largest slot IDs can map.
func (e *Executor) maxSlot() int {
	if !e.asRoot {
		return maxID
	}
	return maxID - e.opts.UIDBase
}

// Run runs spec in a new sandbox; see the package documentation.
func (e *Executor) Run(ctx context.Context, spec executor.Spec) (executor.Result, error) {
	res := executor.Result{ExitCode: -1}
	if err := validateSpec(spec, e.maxSlot()); err != nil {
		return res, err
	}
	if ctx.Err() != nil {
		// Stopped before it started: nothing to set up or kill.
		res.Cause = context.Cause(ctx)
		return res, nil
	}
	uid, gid := e.IDs(spec.Slot)
	ws, err := workspace.Create(e.opts.WorkRoot, spec.JobID, uid, gid)
	if err != nil {
		return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
	}
	log := e.log.With("job_id", spec.JobID)
	if e.opts.KeepWorkspace {
		log.Info("keeping workspace", "workspace", ws)
	} else {
		defer func() {
			if err := workspace.Remove(ws); err != nil {
				log.Warn("remove workspace", "workspace", ws, "err", err)
			}
		}()
	}

	options, command := sandbox{
		uid: uid, gid: gid,
		workspace: ws,
		root:      e.root,
		network:   e.opts.Network,
		binds:     spec.Binds,
		env:       spec.Env,
		argv:      spec.Argv,
		statusFD:  statusFD,
	}.args()
	inv := invocation{path: e.opts.Path, options: options, command: command, uid: uid, output: spec.Output}
	if inv.output == nil {
		inv.output = io.Discard
	}
	if e.asRoot {
		inv.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	}

	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, spec.Timeout, executor.ErrTimeout)
		defer cancel()
	}
	res.Started = time.Now()
	end, err := inv.run(ctx)
	res.Finished = time.Now()
	if err != nil {
		return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
	}
	if end.outputErr != nil {
		log.Warn("job output lost", "err", end.outputErr)
	}
	res.ExitCode, res.Cause = end.exitCode, end.cause
	log.Debug("job ended", "exit_code", res.ExitCode, "cause", res.Cause, "duration", res.Finished.Sub(res.Started))
	return res, nil
}
