package agent

import (
	"errors"
	"fmt"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/executor"
)

// Job states a completion reports.
const (
	stateSucceeded = "succeeded"
	stateFailed    = "failed"
	stateCancelled = "cancelled"
)

// outcome maps how a workload ended to the completion to report: err is
// Executor.Run's error (the workload could not be set up or started),
// timeout the job's own. A workload stopped for another cause (its lease
// was lost, the agent is stopping) has no outcome: callers report nothing
// for it and do not call outcome.
func outcome(res executor.Result, err error, timeout time.Duration) apiv1.Complete {
	switch {
	case err != nil:
		return apiv1.Complete{State: stateFailed, Reason: err.Error()}
	case errors.Is(res.Cause, executor.ErrTimeout):
		return apiv1.Complete{State: stateFailed, Reason: fmt.Sprintf("timed out after %v", timeout)}
	case errors.Is(res.Cause, ErrCanceled):
		return apiv1.Complete{State: stateCancelled, Reason: "cancelled"}
	case errors.Is(res.Cause, executor.ErrLimitExceeded):
		// "memory limit 2 GiB exceeded", whether the job was stopped or
		// ended by itself after the kernel killed one of its processes.
		return apiv1.Complete{State: stateFailed, Reason: res.Cause.Error()}
	case res.Cause != nil:
		return apiv1.Complete{State: stateFailed, Reason: fmt.Sprintf("stopped: %v", res.Cause)}
	case res.ExitCode == 0:
		return apiv1.Complete{State: stateSucceeded, ExitCode: new(res.ExitCode)}
	default:
		return apiv1.Complete{State: stateFailed, ExitCode: new(res.ExitCode), Reason: fmt.Sprintf("exit status %d", res.ExitCode)}
	}
}
