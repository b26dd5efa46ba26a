// Package executor defines how an agent runs one job's workload in a sandbox.
//
// Lifecycle: the agent builds a Spec and calls Run. Run creates a fresh
// workspace, starts the workload, copies its combined output to Spec.Output
// as it is produced, waits for it, kills every process it started and removes
// the workspace before returning. Cancelling the context kills the whole
// process tree at once; the cause (context.Cause) is reported in the Result.
package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"
)

// Bind makes a host path visible inside the sandbox.
type Bind struct {
	Source   string // host path
	Target   string // path inside the sandbox
	ReadOnly bool
}

// Spec is one workload to run.
type Spec struct {
	// JobID names the workload in logs and in the workspace's directory name.
	JobID string
	// Argv is the command; Argv[0] is resolved inside the sandbox's PATH.
	Argv []string
	// Env is the complete environment of the workload: nothing from the
	// agent's own environment leaks in.
	Env map[string]string
	// Binds are extra paths to expose (the runner directory, caches).
	Binds []Bind
	// Timeout bounds the run; zero means none.
	Timeout time.Duration
	// Output receives stdout and stderr, interleaved as written.
	Output io.Writer
	// Slot is the agent's job slot (0 ≤ Slot < max jobs); an executor may
	// use it to give concurrent jobs distinct uids. Two runs at once never
	// share a slot.
	Slot int
	// Limits bound the resources the workload may use.
	Limits Limits
	// Network is the workload's prepared network (a netpolicy.Sandbox,
	// with its egress policy already in force); nil gives the workload no
	// network at all (a namespace holding only a loopback interface).
	Network Network
	// Dir is the working directory inside the sandbox (absolute); empty:
	// the workspace.
	Dir string
	// Docker gives the workload a Docker-compatible daemon of its own,
	// inside its sandbox, with DOCKER_HOST pointing at it; an executor
	// that cannot refuses the Spec.
	Docker bool
	// Container, for an executor that runs workloads in containers (the
	// Docker executor), is the image and how to run it; others refuse a
	// Spec with one.
	Container *Container
	// BuildNetwork, instead of Network, builds the workload's network
	// once the executor knows its namespace: a Docker container's, a warm
	// sandbox's (netnsFD, valid for the call only), or, with netnsFD 0, a
	// namespace of the network's own that the sandbox then joins. The
	// caller releases what it built once Run has returned. nil (and no
	// Network): no network at all.
	BuildNetwork func(ctx context.Context, netnsFD int) (Network, error)
}

// Container is a workload's image and how to run it.
type Container struct {
	// Image is a reference the daemon resolves (name:tag or @digest).
	Image string
	// ReadOnlyRoot makes the image's filesystem read-only (the workspace
	// and /tmp stay writable).
	ReadOnlyRoot bool
}

// Limits bound what one workload may use. A zero field is no limit.
type Limits struct {
	// CPUs is the CPU time the workload may use per second, in CPUs (1.5
	// is one and a half). Past it the workload is throttled, not stopped.
	CPUs float64
	// Memory bounds, in bytes, the memory the workload's processes are
	// charged for: anonymous memory, page cache, tmpfs files and kernel
	// memory, without swap. The kernel reclaims what it can; when that is
	// not enough its OOM killer strikes and the workload is stopped with a
	// *LimitError.
	Memory int64
	// Pids bounds the processes and threads the workload has at once; past
	// it fork and clone fail (EAGAIN).
	Pids int64
	// Disk bounds, in bytes, what the workload stores in its writable
	// directories (the workspace and the temporary directory); past it the
	// workload is stopped with a *LimitError.
	Disk int64
}

// Smallest nonzero limits: below them a sandbox cannot even start.
const (
	MinMemory = 32 << 20
	MinPids   = 16
	MinDisk   = 64 << 20
	MinCPUs   = 0.01
)

// Validate reports the first limit that is out of range.
func (l Limits) Validate() error {
	switch {
	case l.CPUs < 0 || math.IsNaN(l.CPUs) || math.IsInf(l.CPUs, 0) || (l.CPUs > 0 && l.CPUs < MinCPUs):
		return fmt.Errorf("cpu limit %v: want 0 (none) or at least %v CPUs", l.CPUs, MinCPUs)
	case l.Memory < 0 || (l.Memory > 0 && l.Memory < MinMemory):
		return fmt.Errorf("memory limit %d bytes: want 0 (none) or at least %s", l.Memory, FormatBytes(MinMemory))
	case l.Pids < 0 || (l.Pids > 0 && l.Pids < MinPids):
		return fmt.Errorf("pids limit %d: want 0 (none) or at least %d", l.Pids, MinPids)
	case l.Disk < 0 || (l.Disk > 0 && l.Disk < MinDisk):
		return fmt.Errorf("disk limit %d bytes: want 0 (none) or at least %s", l.Disk, FormatBytes(MinDisk))
	}
	return nil
}

// Network is a prepared network namespace that a workload joins.
type Network interface {
	// Enter moves the calling OS thread, which the caller has locked, into
	// the namespace; restore moves it back. A process the thread starts in
	// between is in the namespace.
	Enter() (restore func() error, err error)
	// Files are files of the network's own in the sandbox, in order:
	// /etc/resolv.conf and /etc/hosts (for the sandbox's hostname), and
	// whatever else it needs (a certificate bundle). Each path is
	// absolute, under /etc.
	Files(hostname string) []File
}

// File is a file with its contents, placed read-only in a sandbox.
type File struct {
	Path string
	Data []byte
}

// HostNetwork, as a Spec's Network, shares the agent's own network with
// the workload: no isolation at all. It exists for what an agent that
// cannot make networks (not root) still runs: remote Bazel servers, which
// the agent must reach on their loopback.
var HostNetwork Network = hostNetwork{}

type hostNetwork struct{}

func (hostNetwork) Enter() (func() error, error) { return func() error { return nil }, nil }
func (hostNetwork) Files(string) []File          { return nil }

// Result is how a workload ended.
type Result struct {
	// ExitCode is the process's exit status; -1 when it was killed by a
	// signal or never started.
	ExitCode int
	// Cause is nil for a normal exit; otherwise why the workload was stopped
	// (ErrTimeout, a *LimitError, or the context's cause such as a lease
	// lost or a cancel). A workload that went over its memory or disk limit
	// has a *LimitError here even when it ended by itself (one of its
	// processes killed by the kernel, a write refused), with ExitCode as it
	// exited.
	Cause    error
	Started  time.Time
	Finished time.Time
}

// ErrTimeout is the cause of a workload stopped by Spec.Timeout.
var ErrTimeout = errors.New("job timed out")

// ErrLimitExceeded matches every *LimitError (errors.Is).
var ErrLimitExceeded = errors.New("limit exceeded")

// LimitError is the cause of a workload stopped for going over one of its
// Limits.
type LimitError struct {
	// Resource is "memory" or "disk".
	Resource string
	// Limit is the limit in bytes.
	Limit int64
	// Detail, when set, says more, e.g. that no inode was left.
	Detail string
}

func (e *LimitError) Error() string {
	msg := fmt.Sprintf("%s limit %s exceeded", e.Resource, FormatBytes(e.Limit))
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrLimitExceeded) hold.
func (e *LimitError) Is(target error) bool { return target == ErrLimitExceeded }

// FormatBytes writes n bytes for people: "2 GiB", "1.5 GiB", "512 MiB",
// "100 bytes".
func FormatBytes(n int64) string {
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	if n < 1024 && n > -1024 {
		return strconv.FormatInt(n, 10) + " bytes"
	}
	v, i := float64(n)/1024, 0
	for i < len(units)-1 && math.Abs(v) >= 1024 {
		v /= 1024
		i++
	}
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) + " " + units[i]
}

// Executor runs workloads. Implementations are safe for concurrent use.
type Executor interface {
	// Name is the executor's kind, e.g. "bwrap".
	Name() string
	// Run runs spec to completion. A non-nil error means the workload could
	// not be set up or started (nothing of it is left running); how the
	// workload itself ended is in Result.
	Run(ctx context.Context, spec Spec) (Result, error)
}
