package apiv1

import "time"

// Enroll is the body of POST /api/v1/agent/enroll, authenticated by the
// one-time join token in the Authorization header.
type Enroll struct {
	Name     string   `json:"name"`
	Labels   []string `json:"labels"`
	MaxJobs  int      `json:"max_jobs"`
	Hostname string   `json:"hostname,omitempty"`
	Version  string   `json:"version,omitempty"`
}

// Enrolled answers an enrollment (and a credential refresh).
type Enrolled struct {
	AgentID    string    `json:"agent_id"`
	Org        string    `json:"org"`
	Credential string    `json:"credential"`
	ExpiresAt  time.Time `json:"expires_at"`
	// Labels the agent may serve (what the join token allowed).
	AllowedLabels []string `json:"allowed_labels"`
}

// Register is the body of POST /api/v1/agent/register, sent by an enrolled
// agent when it starts: what it serves now. Labels must be a subset of
// those its enrollment allows.
type Register struct {
	Labels   []string `json:"labels"`
	MaxJobs  int      `json:"max_jobs"`
	Hostname string   `json:"hostname,omitempty"`
	Version  string   `json:"version,omitempty"`
}

// LeaseRequest is the body of POST /api/v1/agent/lease. The call waits up
// to WaitSeconds for a job (long poll) and answers 204 when none came.
type LeaseRequest struct {
	WaitSeconds int `json:"wait_seconds"`
}

// Lease hands a job to an agent.
type Lease struct {
	Job   Job   `json:"job"`
	Fence int64 `json:"fence"`
	// TTLSeconds: the lease expires unless renewed within this time.
	TTLSeconds int64 `json:"ttl_seconds"`
	// Runner is set for GitHub jobs: start an ephemeral runner with it.
	Runner *RunnerLease `json:"runner,omitempty"`
	// Env is added to the job's environment (cache endpoints and the
	// job-scoped cache token).
	Env map[string]string `json:"env,omitempty"`
	// Egress is the job's network policy. An agent that gives jobs a
	// network enforces it; absent, the agent's default policy applies.
	Egress *EgressPolicy `json:"egress,omitempty"`
	// Cache is the job's access to the build caches, which an agent with
	// sandbox networks forwards to the job at its platform address (and
	// then rewrites Env's endpoints to point there).
	Cache *CacheAccess `json:"cache,omitempty"`
	// Mask lists the secrets the job is given (its job-scoped token, a
	// runner's JIT config): the agent replaces them with *** in the job's
	// output before it leaves the host, so they are never stored.
	Mask []string `json:"mask,omitempty"`
}

// RunnerLease carries a just-in-time runner configuration. It is handed
// over once and never stored by the control plane.
type RunnerLease struct {
	Name      string   `json:"name"`
	JITConfig string   `json:"jit_config"`
	Labels    []string `json:"labels"`
}

// LeaseRef names one live lease of the calling agent.
type LeaseRef struct {
	JobID string `json:"job_id"`
	Fence int64  `json:"fence"`
}

// Sync is the body of POST /api/v1/agent/sync: the agent's heartbeat. It
// renews every lease listed and, when all are fine, waits up to
// WaitSeconds for one of them to be cancelled.
type Sync struct {
	Leases      []LeaseRef `json:"leases"`
	WaitSeconds int        `json:"wait_seconds"`
}

// LeaseStatus is what the control plane says of one lease.
type LeaseStatus struct {
	JobID string `json:"job_id"`
	// Status: ok, cancel (stop the workload and report cancelled) or lost
	// (the lease is no longer yours: kill the workload, report nothing).
	Status    string    `json:"status"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// Synced answers a Sync.
type Synced struct {
	Leases []LeaseStatus `json:"leases"`
	// Disabled tells a disabled agent to stop.
	Disabled bool `json:"disabled,omitempty"`
}

// Fenced is the body of POST /api/v1/agent/jobs/{id}/start.
type Fenced struct {
	Fence int64 `json:"fence"`
}

// Logs is the body of POST /api/v1/agent/jobs/{id}/logs. Chunks are
// numbered from 0 per lease and sent in order; a chunk sent twice is
// stored once, and one after a gap is not taken (the answer says up to
// where the server holds them).
type Logs struct {
	Fence  int64      `json:"fence"`
	Chunks []LogChunk `json:"chunks"`
	// End: the workload has ended and these are its last chunks (there
	// may be none): its last line ends even without a newline.
	End bool `json:"end,omitempty"`
}

// LogsAck answers a Logs upload: every chunk up to and including Seq is
// stored (-1: none of this lease's yet). A 429 answer with Retry-After
// says the server's ingest queue is full: send again after it.
type LogsAck struct {
	Seq int64 `json:"seq"`
	// Full: the job's log reached the server's limit; it keeps nothing
	// more, so the agent may stop sending.
	Full bool `json:"full,omitempty"`
}

// Complete is the body of POST /api/v1/agent/jobs/{id}/complete.
type Complete struct {
	Fence int64 `json:"fence"`
	// State: succeeded, failed or cancelled.
	State    string `json:"state"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Reason   string `json:"reason,omitempty"`
	// Egress is what the job did on the network, when it had one.
	Egress *EgressReport `json:"egress,omitempty"`
}
