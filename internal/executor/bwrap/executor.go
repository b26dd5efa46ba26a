package bwrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/jobdocker"
	"github.com/nimbus-build/nimbus/internal/executor/warmpool"
)

// Executor runs jobs in bubblewrap sandboxes. It is safe for concurrent use.
type Executor struct {
	opts    Options
	log     *slog.Logger
	host    hostLayout
	asRoot  bool   // the agent is root: jobs get their own unprivileged uids
	seccomp []byte // the sandboxes' syscall filter
	// nested is the filter of sandboxes that run a Docker daemon
	// (Spec.Docker); dockerConf the configuration they read.
	nested     []byte
	dockerConf string // written at the first such job
	dockerOnce sync.Once
	dockerErr  error

	// As root only: the sandboxes' cgroups and the slots' filesystems.
	cgroups cgroupTree
	disks   *slotDisks

	// warm keeps sandboxes with a Docker daemon ready (Options.WarmDocker).
	warm *warmpool.Pool[*warmSandbox]

	mu     sync.Mutex
	busy   map[int]bool // slots with a run in flight
	closed bool
	runs   sync.WaitGroup
}

var _ executor.Executor = (*Executor)(nil)

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("bwrap executor closed")

// New returns an Executor. It checks opts but not bubblewrap itself: call
// Check for that.
//
// The Executor owns its work root: New removes what an earlier Executor on
// the same work root (a crashed agent's) left there and in its cgroups,
// killing its processes and unmounting its filesystems. Two Executors must
// not share a work root at once. Call Close when done.
func New(opts Options) (*Executor, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	host, err := probeHost("/")
	if err != nil {
		return nil, err
	}
	prog, err := seccompProgram(false)
	if err != nil {
		return nil, err
	}
	nested, err := seccompProgram(true)
	if err != nil {
		return nil, err
	}
	e := &Executor{
		opts:    opts,
		log:     opts.Logger.With("component", "executor", "executor", "bwrap"),
		host:    host,
		asRoot:  os.Geteuid() == 0,
		seccomp: prog,
		nested:  nested,
		busy:    map[int]bool{},
	}
	if err := e.sweep(); err != nil {
		return nil, err
	}
	e.dockerConf = filepath.Join(opts.WorkRoot, "docker-conf")
	if e.asRoot {
		if e.cgroups, err = newCgroupTree(opts.WorkRoot); err != nil {
			return nil, err
		}
		e.disks = newSlotDisks(opts.WorkRoot)
	}
	if e.warm, err = e.newWarmPool(); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Close waits for the runs in flight, then unmounts the slots' filesystems
// and removes them and the Executor's cgroups. Run fails after Close.
func (e *Executor) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.runs.Wait()
	e.warm.Close()
	var errs []error
	if e.disks != nil {
		errs = append(errs, e.disks.close())
	}
	if e.cgroups != nil {
		errs = append(errs, e.cgroups.close())
	}
	errs = append(errs, os.RemoveAll(e.dockerConf))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close bwrap executor: %w", err)
	}
	return nil
}

// begin registers a run in slot; end, its result, unregisters it.
func (e *Executor) begin(slot int) (end func(), err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.closed:
		return nil, ErrClosed
	case e.busy[slot]:
		return nil, fmt.Errorf("slot %d already runs a job", slot)
	}
	e.busy[slot] = true
	e.runs.Add(1)
	return func() {
		e.mu.Lock()
		delete(e.busy, slot)
		e.mu.Unlock()
		e.runs.Done()
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
	if err == nil {
		err = e.checkLimits(spec.Limits)
	}
	if err != nil {
		return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
	}
	end, err := e.begin(spec.Slot)
	if err != nil {
		return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
	}
	defer end()
	log := e.log.With("job_id", spec.JobID, "slot", spec.Slot)
	if spec.Network == nil && spec.BuildNetwork != nil {
		if w := e.takeWarm(ctx, spec); w != nil {
			return e.runWarm(ctx, spec, w, log)
		}
		// A namespace of the network's own, which bwrap then joins.
		netw, err := spec.BuildNetwork(ctx, 0)
		if err != nil {
			if ctx.Err() != nil {
				res.Cause = context.Cause(ctx)
				return res, nil
			}
			return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
		}
		spec.Network = netw
	}
	st, err := e.newJobStorage(spec.JobID, spec.Slot, spec.Limits.Disk, uid, gid)
	if err != nil {
		return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
	}
	if e.opts.KeepWorkspace {
		log.Info("keeping workspace", "path", st.workspace)
	} else {
		defer func() {
			if err := st.remove(); err != nil {
				log.Error("remove workspace", "error", err)
			}
		}()
	}
	var docker *jobdocker.Layout
	if spec.Docker {
		e.dockerOnce.Do(func() { e.dockerErr = jobdocker.WriteConf(e.dockerConf) })
		if e.dockerErr != nil {
			return res, fmt.Errorf("run job %s: %w", spec.JobID, e.dockerErr)
		}
		dir, err := st.dockerDir(e.opts.WorkRoot, spec.JobID, uid, gid)
		if err != nil {
			return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
		}
		docker = &jobdocker.Layout{Storage: dir, Conf: e.dockerConf}
		if e.asRoot {
			docker.Tun = filepath.Join(e.opts.WorkRoot, fmt.Sprintf("tun-%d", spec.Slot))
			if err := jobdocker.MakeTun(docker.Tun, uid, gid); err != nil {
				return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
			}
			defer os.Remove(docker.Tun)
		}
	}
	var cg sandboxCgroup
	if e.cgroups != nil {
		cg, err = e.cgroups.newSandbox(cgroupName(spec.Slot), spec.Limits)
		if err != nil {
			return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
		}
		defer func() {
			if err := cg.destroy(); err != nil {
				log.Error("remove the sandbox's cgroup", "error", err)
			}
		}()
	}
	netMode, netw := networkNone, spec.Network
	var netFiles []executor.File
	var netPaths []string
	switch {
	case netw == executor.HostNetwork:
		netMode, netw = networkHost, nil
	case netw != nil:
		netMode = networkJoined
		netFiles = netw.Files(sandboxHostname)
		for _, f := range netFiles {
			netPaths = append(netPaths, f.Path)
		}
	}
	if docker != nil && len(netFiles) > 0 {
		docker.NetFiles = filepath.Join(e.opts.WorkRoot, fmt.Sprintf("net-%d", spec.Slot))
		os.RemoveAll(docker.NetFiles)
		if err := jobdocker.WriteNetFiles(docker.NetFiles, netFiles); err != nil {
			return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
		}
		defer os.RemoveAll(docker.NetFiles)
		netFiles = nil
	}
	args, err := buildArgs(invocation{
		Argv:      spec.Argv,
		Env:       spec.Env,
		Binds:     spec.Binds,
		Workspace: st.workspace,
		Tmp:       st.tmp,
		Host:      e.host,
		Etc:       e.opts.Etc,
		Network:   netMode,
		Dir:       spec.Dir,
		NetFiles:  netPaths,
		Seccomp:   true,
		Docker:    docker,
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

	filter := e.seccomp
	if spec.Docker {
		filter = e.nested
	}
	p, err := startSandbox(e.opts.BwrapPath, args, newAccounts(uid, gid), cred,
		confinement{seccomp: filter, cgroup: cg, network: netw, netFiles: netFiles}, out, log)
	if err != nil {
		return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
	}
	res.Started = time.Now()
	return supervised(ctx, spec, p, limitWatch{limits: spec.Limits, cgroup: cg, storage: st, log: log}, res)
}

// supervised waits for the job of p to end under spec's timeout, and
// stops it when ctx ends first or the watch finds it over a limit.
func supervised(ctx context.Context, spec executor.Spec, p *sandboxProcess, watch limitWatch, res executor.Result) (executor.Result, error) {
	runCtx, cancel := runContext(ctx, spec.Timeout)
	defer cancel()
	// The watch stops the sandbox, through limitCtx, when it goes over a
	// limit.
	limitCtx, stop := context.WithCancelCause(runCtx)
	defer stop(nil)
	watched := watch.start(limitCtx, stop)
	var err error
	res.ExitCode, res.Cause, err = p.supervise(limitCtx)
	res.Finished = time.Now()
	stop(nil)
	<-watched
	if err != nil {
		return res, fmt.Errorf("run job %s: %w", spec.JobID, err)
	}
	// A job may have ended by itself just after going over a limit.
	if res.Cause == nil {
		if over := watch.over(); over != nil {
			res.Cause = over
		}
	}
	return res, nil
}

// checkLimits refuses limits out of range, and limits an Executor that is
// not root cannot enforce.
func (e *Executor) checkLimits(l executor.Limits) error {
	if err := l.Validate(); err != nil {
		return err
	}
	if !e.asRoot && l != (executor.Limits{}) {
		return errors.New("job limits (cpu, memory, pids, disk) need the agent to run as root")
	}
	return nil
}

// cgroupName names the cgroup of a sandbox in slot: unique while it runs,
// and a random part so that one that could not be removed never blocks
// the slot.
func cgroupName(slot int) string {
	return fmt.Sprintf("slot-%d-%s", slot, randomHex(4))
}

// runContext bounds a run by timeout (none when zero), with
// executor.ErrTimeout as the cause.
func runContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout > 0 {
		return context.WithTimeoutCause(ctx, timeout, executor.ErrTimeout)
	}
	return context.WithCancel(ctx)
}
