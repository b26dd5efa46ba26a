package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"path/filepath"
	"slices"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/executor"
	"github.com/nimbus-build/nimbus/internal/executor/workspace"
	"github.com/nimbus-build/nimbus/internal/netpolicy"
)

// Where a GitHub job finds its runner directory in the sandbox.
const (
	runnerTarget = "/runner"
	runnerScript = runnerTarget + "/run.sh"
)

// errNoRunnerDir fails a GitHub job on an agent without a runner directory.
var errNoRunnerDir = errors.New("this agent has no GitHub Actions runner directory (configure the agent's runner dir) and cannot run GitHub jobs")

// errNoContainers fails a job with a container on an agent without the
// Docker executor.
var errNoContainers = errors.New("this agent has no Docker executor (start it with --docker-socket) and cannot run jobs with a container image")

// errLogDrainTimeout stops the upload of a job's last chunks.
var errLogDrainTimeout = errors.New("log chunks not acknowledged in time")

// jobRunner runs one leased job to its end and reports that end once.
type jobRunner struct {
	cfg       Config
	cp        *controlPlane
	leases    *leaseTable
	lease     apiv1.Lease
	grantedAt time.Time
	slot      int
	log       *slog.Logger
	// egress is the job's network report, once its sandbox is gone.
	egress *apiv1.EgressReport
}

// run runs the job. Its context is the agent's: when it ends (hard stop),
// the workload is killed and nothing is reported. run returns only errors
// fatal to the agent; how the job went is reported to the control plane
// and logged.
func (r *jobRunner) run(ctx context.Context) error {
	ref := apiv1.LeaseRef{JobID: r.lease.Job.ID, Fence: r.lease.Fence}
	// leaseCtx ends when the lease is lost: every call for the job stops.
	// jobCtx ends also when the job is cancelled: the workload stops.
	leaseCtx, lose := context.WithCancelCause(ctx)
	defer lose(nil)
	jobCtx, cancel := context.WithCancelCause(leaseCtx)
	defer cancel(nil)
	r.leases.add(ref, time.Duration(r.lease.TTLSeconds)*time.Second, r.grantedAt, lose, cancel)
	defer r.leases.remove(ref)
	r.log.Info("job leased", "ttl_seconds", r.lease.TTLSeconds, "github", r.lease.Runner != nil)

	err := retry(leaseCtx, r.log, r.cfg.MaxBackoff, "start job", func(ctx context.Context) error {
		return r.cp.start(ctx, ref.JobID, ref.Fence)
	})
	if err != nil {
		if leaseCtx.Err() == nil {
			lose(fmt.Errorf("%w: %w", ErrLeaseLost, err))
		}
		return r.stopped(leaseCtx, err)
	}

	res, runErr, fatalErr := r.runAndStream(leaseCtx, jobCtx, lose)
	if fatalErr != nil {
		return fatalErr
	}
	if leaseCtx.Err() != nil {
		return r.stopped(leaseCtx, nil)
	}
	report := outcome(res, runErr, r.timeout())
	if runErr != nil {
		r.log.Error("workload could not run", "err", runErr)
	}
	report.Fence = ref.Fence
	report.Egress = r.egress
	return r.complete(leaseCtx, report)
}

// stopped ends a job whose lease is gone or whose agent is stopping,
// reporting nothing. It returns err when it is fatal to the agent.
func (r *jobRunner) stopped(leaseCtx context.Context, err error) error {
	cause := context.Cause(leaseCtx)
	switch {
	case fatal(err):
		return err
	case errors.Is(cause, ErrLeaseLost):
		r.log.Warn("job stopped: lease lost; not reporting it", "cause", cause)
	default:
		r.log.Warn("job stopped: agent stopping; its lease will expire and the job be requeued", "cause", cause)
	}
	return nil
}

// runAndStream runs the workload while its output streams to the control
// plane, then waits (boundedly) for the last chunk's acknowledgement. A
// lease found gone while uploading kills the workload. fatalErr is an
// upload's error fatal to the agent.
func (r *jobRunner) runAndStream(leaseCtx, jobCtx context.Context, lose context.CancelCauseFunc) (res executor.Result, runErr, fatalErr error) {
	ref := apiv1.LeaseRef{JobID: r.lease.Job.ID, Fence: r.lease.Fence}
	spoolDir, maxUnacked := "", min(r.cfg.MaxUnacked, memoryUnacked)
	if root := r.cfg.logSpoolRoot(); root != "" {
		spoolDir, maxUnacked = filepath.Join(root, fmt.Sprintf("%s-%d", ref.JobID, ref.Fence)), r.cfg.MaxUnacked
	}
	stream := newLogStreamer(logStreamerOptions{
		fence: ref.Fence,
		upload: func(ctx context.Context, chunks []apiv1.LogChunk, end bool) (apiv1.LogsAck, error) {
			return r.cp.logs(ctx, ref.JobID, apiv1.Logs{Fence: ref.Fence, Chunks: chunks, End: end})
		},
		maxChunk:      r.cfg.MaxChunk,
		maxBatch:      maxBatch,
		maxUnacked:    maxUnacked,
		spoolDir:      spoolDir,
		mask:          r.lease.Mask,
		flushInterval: r.cfg.FlushInterval,
		maxBackoff:    r.cfg.MaxBackoff,
		log:           r.log,
	})
	uploadCtx, stopUpload := context.WithCancelCause(leaseCtx)
	defer stopUpload(nil)
	uploaded := make(chan struct{})
	var uploadErr error
	go func() {
		defer close(uploaded)
		uploadErr = stream.run(uploadCtx)
		switch {
		case uploadErr == nil || uploadCtx.Err() != nil:
		case fatal(uploadErr):
			lose(uploadErr)
		case leaseGone(uploadErr):
			lose(fmt.Errorf("%w: %w", ErrLeaseLost, uploadErr))
		default:
			r.log.Error("upload logs: giving up on the job's output", "err", uploadErr)
		}
	}()

	stopAborting := context.AfterFunc(jobCtx, stream.abortWrites)
	res, runErr = r.runWorkload(jobCtx, stream)
	stopAborting()
	stream.finish()

	drain := time.NewTimer(r.cfg.LogDrainTimeout)
	defer drain.Stop()
	select {
	case <-uploaded:
	case <-drain.C:
		stopUpload(errLogDrainTimeout)
		<-uploaded
	}
	if past := stream.pastLimit(); past > 0 {
		r.log.Info("job output past the server's log limit was not sent", "bytes", past)
	}
	if unsent, dropped := stream.lost(); unsent > 0 || dropped > 0 {
		r.log.Warn("job output lost", "unsent_bytes", unsent, "dropped_bytes", dropped, "cause", context.Cause(uploadCtx))
	}
	if fatal(uploadErr) {
		return res, runErr, uploadErr
	}
	return res, runErr, nil
}

// runWorkload builds the job's spec and runs it.
func (r *jobRunner) runWorkload(ctx context.Context, output io.Writer) (executor.Result, error) {
	job := r.lease.Job
	spec := executor.Spec{
		JobID:   job.ID,
		Argv:    job.Argv,
		Env:     r.env(),
		Timeout: r.timeout(),
		Output:  output,
		Slot:    r.slot,
		Limits:  r.cfg.JobLimits,
	}
	if r.lease.Runner != nil {
		if r.cfg.RunnerDir == "" {
			return executor.Result{ExitCode: -1}, errNoRunnerDir
		}
		dir, err := r.cloneRunner()
		if err != nil {
			return executor.Result{ExitCode: -1}, err
		}
		defer func() {
			if err := workspace.Remove(dir); err != nil {
				r.log.Warn("remove runner clone", "dir", dir, "err", err)
			}
		}()
		// The jit config is a secret: it goes to the sandbox only, and the
		// spec is never logged.
		spec.Argv = []string{runnerScript, "--jitconfig", r.lease.Runner.JITConfig}
		spec.Binds = append(spec.Binds, executor.Bind{Source: filepath.Join(dir, "runner"), Target: runnerTarget})
	}
	ex := r.cfg.Executor
	if r.cfg.DockerLabel != "" && job.Container == nil && slices.Contains(job.Labels, r.cfg.DockerLabel) {
		spec.Docker = true
	}
	if c := job.Container; c != nil {
		if r.cfg.Containers == nil {
			return executor.Result{ExitCode: -1}, errNoContainers
		}
		ex = r.cfg.Containers
		spec.Container = &executor.Container{Image: c.Image, ReadOnlyRoot: c.ReadOnlyRoot}
		// The container's limits are Docker's: a disk limit is the bubblewrap
		// executor's (its slot filesystems).
		spec.Limits.Disk = 0
	}
	if r.cfg.Network != nil {
		if c := r.lease.Cache; c != nil {
			env := apiv1.CacheEnv("http://"+netpolicy.PlatformName, "", c.Token, !c.NoUploadResults)
			if c.GRPC != "" {
				env = apiv1.CacheEnv("http://"+netpolicy.PlatformName, netpolicy.PlatformGRPC, c.Token, !c.NoUploadResults)
			}
			maps.Copy(spec.Env, env)
		}
		if spec.Container != nil || spec.Docker {
			// Docker makes the container's namespace, or a warm sandbox has
			// one (the executor makes one otherwise): the network is built
			// in it before the workload starts.
			if spec.Container == nil && r.intercepts() {
				spec.Env["NODE_EXTRA_CA_CERTS"] = netpolicy.JobCAPath
			}
			var sb *netpolicy.Sandbox
			defer func() {
				if sb != nil {
					r.closeNetwork(sb)
				}
			}()
			spec.BuildNetwork = func(ctx context.Context, netnsFD int) (executor.Network, error) {
				var err error
				sb, err = r.prepareNetwork(ctx, netnsFD)
				return sb, err
			}
		} else {
			sb, err := r.prepareNetwork(ctx, 0)
			if err != nil {
				return executor.Result{ExitCode: -1}, err
			}
			// Closed once Run has returned: no process of the job is left.
			defer r.closeNetwork(sb)
			spec.Network = sb
			if sb.InterceptsActionsCache() {
				// Node.js trusts its own bundle, not the system's.
				spec.Env["NODE_EXTRA_CA_CERTS"] = netpolicy.JobCAPath
			}
		}
	}
	r.log.Info("workload starting", "executor", ex.Name())
	res, err := ex.Run(ctx, spec)
	if err == nil {
		r.log.Info("workload ended", "exit_code", res.ExitCode, "cause", res.Cause, "duration", res.Finished.Sub(res.Started))
	}
	return res, err
}

// prepareNetwork builds the job's network under its lease's egress policy
// (the agent's default when the lease has none), with the platform's
// endpoints forwarded to the control plane.
func (r *jobRunner) prepareNetwork(ctx context.Context, netnsFD int) (*netpolicy.Sandbox, error) {
	pol := r.cfg.DefaultEgress
	if r.lease.Egress != nil {
		pol = *r.lease.Egress
	}
	platform := netpolicy.Platform{HTTPPaths: apiv1.PlatformPaths, Transport: r.cfg.PlatformTransport}
	if u, err := url.Parse(r.cfg.Server); err == nil {
		platform.HTTP = u
	}
	spec := netpolicy.Spec{ID: r.lease.Job.ID, Policy: netpolicy.PolicyFrom(pol), Platform: platform, NetnsFD: netnsFD}
	if c := r.lease.Cache; c != nil {
		spec.Platform.GRPC, spec.Platform.CacheToken = c.GRPC, c.Token
		spec.InterceptActionsCache = r.intercepts()
	}
	sb, err := r.cfg.Network.Prepare(ctx, spec)
	if err != nil {
		return nil, fmt.Errorf("prepare the job's network: %w", err)
	}
	r.log.Info("job network ready", "egress_mode", sb.Mode(), "address", sb.Addr())
	return sb, nil
}

// intercepts reports whether the job's network answers GitHub's cache
// hosts itself: an unmodified workflow's actions/cache talks to them, and
// a GitHub job's sandbox sends it to the platform's cache.
func (r *jobRunner) intercepts() bool {
	if r.lease.Cache == nil || r.lease.Runner == nil || !r.cfg.InterceptActionsCache {
		return false
	}
	_, err := url.Parse(r.cfg.Server)
	return err == nil
}

// closeNetwork removes the job's network and keeps its egress report for
// the completion; refused connections are logged with the job's id.
func (r *jobRunner) closeNetwork(sb *netpolicy.Sandbox) {
	rep, err := sb.Close()
	if err != nil {
		r.log.Warn("close the job's network", "err", err)
	}
	for _, c := range rep.Refused {
		r.log.Info("egress refused", "addr", c.Addr, "proto", c.Proto, "port", c.Port, "count", c.Count)
	}
	for _, n := range rep.Names {
		if n.Verdict == apiv1.VerdictDenied {
			r.log.Info("egress name denied", "name", n.Name, "type", n.Type, "count", n.Count)
		}
	}
	r.egress = &rep
}

// env is the workload's environment: the job's, the lease's on top, and
// the agent's own variables over both.
func (r *jobRunner) env() map[string]string {
	env := make(map[string]string, len(r.lease.Job.Env)+len(r.lease.Env)+2)
	maps.Copy(env, r.lease.Job.Env)
	maps.Copy(env, r.lease.Env)
	env["NIMBUS_JOB_ID"] = r.lease.Job.ID
	env["CI"] = "true"
	return env
}

func (r *jobRunner) timeout() time.Duration {
	return time.Duration(r.lease.Job.TimeoutSeconds) * time.Second
}

// cloneRunner makes the job's own copy of the runner directory, owned by
// the slot's sandbox ids, in a fresh directory under RunnerClones, and
// returns that directory (the copy is its "runner" entry).
func (r *jobRunner) cloneRunner() (string, error) {
	uid, gid, err := r.cfg.RunnerUIDs(r.slot)
	if err != nil {
		return "", fmt.Errorf("clone runner directory: %w", err)
	}
	dir, err := workspace.Create(r.cfg.RunnerClones, r.lease.Job.ID, uid, gid)
	if err != nil {
		return "", fmt.Errorf("clone runner directory: %w", err)
	}
	if err := workspace.CloneTree(r.cfg.RunnerDir, filepath.Join(dir, "runner"), uid, gid); err != nil {
		return "", errors.Join(fmt.Errorf("clone runner directory: %w", err), workspace.Remove(dir))
	}
	return dir, nil
}

// complete reports the job's end, retrying transient failures until the
// server acknowledges or refuses it, or the lease is lost meanwhile. It
// returns only errors fatal to the agent.
func (r *jobRunner) complete(leaseCtx context.Context, report apiv1.Complete) error {
	err := retry(leaseCtx, r.log, r.cfg.MaxBackoff, "complete job", func(ctx context.Context) error {
		return r.cp.complete(ctx, r.lease.Job.ID, report)
	})
	log := r.log.With("state", report.State)
	switch {
	case err == nil:
		log.Info("job completed", "reason", report.Reason)
	case fatal(err):
		return err
	case leaseCtx.Err() != nil:
		return r.stopped(leaseCtx, nil)
	case leaseGone(err):
		// Either the lease was lost, or an earlier attempt whose answer
		// never came through was applied.
		log.Warn("completion refused: the lease is gone or the job already finished", "err", err)
	default:
		log.Error("completion refused", "err", err)
	}
	return nil
}
