package agent

import (
	"errors"
	"net/http"

	"github.com/nimbus-build/nimbus/internal/apiclient"
)

// Fatal errors: Run stops with one of these (wrapped) and kills every
// workload.
var (
	// ErrUnauthenticated: the server refused the agent's credential (401),
	// because the agent was disabled or its credential revoked or expired.
	ErrUnauthenticated = errors.New("the server refused the agent's credential (agent disabled or credential revoked)")
	// ErrDisabled: the control plane disabled this agent.
	ErrDisabled = errors.New("the control plane disabled this agent")
)

// Causes of a job's context: why its workload was stopped.
var (
	// ErrCanceled: the control plane cancelled the job; it is reported
	// cancelled.
	ErrCanceled = errors.New("job cancelled by the control plane")
	// ErrLeaseLost: the lease is no longer this agent's (the server said
	// so, refused its fence, or it expired without renewal); nothing is
	// reported.
	ErrLeaseLost = errors.New("lease lost")
	// ErrGracefulStop ends the lease loop after GracefulStop.
	ErrGracefulStop = errors.New("agent stopping gracefully")
)

// fatal reports whether err must stop the agent.
func fatal(err error) bool {
	return errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrDisabled)
}

// leaseGone reports whether a per-job call failed because the lease is no
// longer the agent's: a stale fence, a job that already finished, or one
// the server does not know.
func leaseGone(err error) bool {
	return apiclient.IsStatus(err, http.StatusConflict) || apiclient.IsStatus(err, http.StatusNotFound)
}

// retryable reports whether a failed call may succeed if repeated.
func retryable(err error) bool { return !fatal(err) && apiclient.Retryable(err) }
