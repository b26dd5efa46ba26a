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
	"io"
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
	// use it to give concurrent jobs distinct uids.
	Slot int
}

// Result is how a workload ended.
type Result struct {
	// ExitCode is the process's exit status; -1 when it was killed by a
	// signal or never started.
	ExitCode int
	// Cause is nil for a normal exit; otherwise why the workload was stopped
	// (ErrTimeout, or the context's cause such as a lease lost or a cancel).
	Cause    error
	Started  time.Time
	Finished time.Time
}

// ErrTimeout is the cause of a workload stopped by Spec.Timeout.
var ErrTimeout = errors.New("job timed out")

// Executor runs workloads. Implementations are safe for concurrent use.
type Executor interface {
	// Name is the executor's kind, e.g. "bwrap".
	Name() string
	// Run runs spec to completion. A non-nil error means the workload could
	// not be set up or started (nothing of it is left running); how the
	// workload itself ended is in Result.
	Run(ctx context.Context, spec Spec) (Result, error)
}
