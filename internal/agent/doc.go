// Package agent is the host agent behind `nimbus agent`: it enrolls with the
// control plane, leases jobs, runs each in a sandbox through an
// executor.Executor, streams their output back, keeps their leases alive,
// obeys cancellations and reports each job's end exactly once.
//
// # Loops
//
// Run starts three loops, each a runXLoop(ctx) error in its own file, and
// one job runner per lease:
//
//   - the lease loop asks for a job (long poll) only while a job slot is
//     free, and starts a job runner for each lease;
//   - the sync loop is the heartbeat: it renews every live lease and
//     long-polls for cancellations; a lease that is cancelled, lost, or not
//     renewed before it expires has its workload killed;
//   - the refresh loop renews the agent's credential when two thirds of its
//     lifetime have passed.
//
// A job runner starts the job (fenced), runs the workload under the agent's
// job limits (Config.JobLimits), streams its output in numbered chunks
// (log_streamer.go), waits for every chunk to be acknowledged and completes
// the lease once. A workload over its memory or disk limit completes as
// failed with the limit as its reason ("memory limit 2 GiB exceeded").
//
// # Stopping
//
// GracefulStop stops leasing and lets running jobs finish and report; Run
// then returns nil. Cancelling Run's context is the hard stop: every
// workload is killed at once and nothing more is reported; the control
// plane requeues the jobs when their leases expire. A fatal error (the
// server refused the agent's credential, or disabled the agent) is a hard
// stop too, and Run returns it. Either way, once every workload has ended,
// Run closes the executor if it has a Close method (bwrap's releases its
// slots' filesystems and cgroups).
//
// # Errors
//
// Errors are retryable (transport errors, 5xx, 429: retried with
// apiclient.Backoff) or final. Final ones are either fatal to the agent
// (ErrUnauthenticated, ErrDisabled) or end one lease (409: the lease is gone;
// the workload is killed and nothing is reported).
package agent
