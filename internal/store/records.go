package store

import (
	"slices"
	"time"
)

// Org is a tenant. Every other record belongs to exactly one org.
type Org struct {
	ID   string
	Name string
	// GitHubOwnerID and GitHubLogin link the org to a GitHub account
	// (repository.owner in webhooks); zero and empty when not linked.
	GitHubOwnerID int64
	GitHubLogin   string
	CreatedAt     time.Time
}

// CacheTrust is what an org trusts to write its build cache (the rules are
// internal/cache/jobcred's). A pattern is a full ref ("refs/heads/main") or
// a prefix ending in "*" ("refs/heads/release/*").
type CacheTrust struct {
	OrgID string
	// UntrustedRefs: jobs for these refs get read-only cache credentials
	// (as pull requests from forks always do).
	UntrustedRefs []string
	// ACWriteRefs: jobs for these refs, when trusted, may write the Bazel
	// action cache.
	ACWriteRefs []string
	UpdatedBy   string
	UpdatedAt   time.Time
}

// APIToken is a bearer token for people and CI systems. Only its hash is
// stored; the secret is shown once, when it is created.
type APIToken struct {
	ID        string
	OrgID     string
	Name      string
	Role      string
	Hash      []byte
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never
	RevokedAt time.Time // zero: live
}

// JoinToken enrolls one agent, once, before it expires. Labels bounds what
// the agent may declare.
type JoinToken struct {
	ID        string
	OrgID     string
	Hash      []byte
	Labels    []string
	MaxJobs   int
	CreatedBy string
	// Role is the role of whoever created the token; the agent it enrolls
	// takes it (Agent.Role).
	Role      string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    time.Time
	UsedBy    string // agent id
}

// Agent is an enrolled host.
type Agent struct {
	ID    string
	OrgID string
	Name  string
	// AllowedLabels come from the join token; Labels, what the agent
	// declared, are always a subset of them.
	AllowedLabels []string
	Labels        []string
	// Role is the role that manages the agent: that of whoever created its
	// join token. Only that role or a stronger one may disable it.
	Role       string
	MaxJobs    int
	Hostname   string
	Version    string
	CreatedAt  time.Time
	LastSeenAt time.Time
	DisabledAt time.Time // zero: enabled
	// RBS is what the agent offers remote Bazel; nil when it offers none.
	RBS *AgentRBS
}

// AgentRBS is an agent's remote Bazel offer.
type AgentRBS struct {
	// Address is the agent's mTLS tunnel, host:port, as proxies reach it.
	Address string `json:"address"`
	// InstallMD5s are the Bazel releases it runs (Bazel's install_md5).
	InstallMD5s []string `json:"install_md5s"`
	// Versions name them, for messages.
	Versions    []string `json:"versions,omitempty"`
	MaxSessions int      `json:"max_sessions"`
}

// JobState is where a job is in its life.
type JobState string

const (
	JobQueued    JobState = "queued"
	JobLeased    JobState = "leased"
	JobRunning   JobState = "running"
	JobSucceeded JobState = "succeeded"
	JobFailed    JobState = "failed"
	JobCancelled JobState = "cancelled"
)

// JobStates lists every state.
var JobStates = []JobState{JobQueued, JobLeased, JobRunning, JobSucceeded, JobFailed, JobCancelled}

// Terminal reports whether s is final.
func (s JobState) Terminal() bool {
	return s == JobSucceeded || s == JobFailed || s == JobCancelled
}

// Live reports whether s holds a lease.
func (s JobState) Live() bool { return s == JobLeased || s == JobRunning }

// Valid reports whether s is a known state.
func (s JobState) Valid() bool { return slices.Contains(JobStates, s) }

// JobSource says where a job came from.
const (
	SourceAPI    = "api"
	SourceGitHub = "github"
)

// JobSpec is what to run. For GitHub jobs it is empty: the agent starts an
// ephemeral runner with the just-in-time config handed over in the lease.
type JobSpec struct {
	Argv    []string          `json:"argv,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Timeout time.Duration     `json:"timeout,omitempty"`
	// Container: the job runs in a container of this image.
	Container *Container `json:"container,omitempty"`
}

// Container is the image a job runs in.
type Container struct {
	Image        string `json:"image"`
	ReadOnlyRoot bool   `json:"read_only_root,omitempty"`
}

// GitHubJob is the GitHub side of a job created from a workflow_job webhook.
type GitHubJob struct {
	RepoID         int64
	Repo           string // owner/name
	OwnerID        int64
	OwnerLogin     string
	OwnerType      string // Organization or User
	InstallationID int64
	JobID          int64
	RunID          int64
	RunAttempt     int
	Name           string
	WorkflowName   string
	HeadSHA        string
	HeadBranch     string
	// DefaultBranch is the repository's default branch, from the webhook
	// ("" for jobs created before it was recorded).
	DefaultBranch string `json:",omitempty"`
	// Status is GitHub's view: queued, in_progress or completed. It only
	// moves forward, whatever order the webhooks arrive in.
	Status     string
	Conclusion string
	// RunnerName is the runner that actually took the job (from the
	// in_progress event); it may be a runner Nimbus started for another job.
	RunnerName string
}

// Job is one unit of work leased to agents.
type Job struct {
	ID     string
	OrgID  string
	Source string
	// Key makes creation idempotent: a second Create with the same key
	// returns the first job. Empty for API jobs without an idempotency key.
	Key    string
	State  JobState
	Labels []string
	Spec   JobSpec

	// Attempt counts leases that expired (0 on the first run).
	Attempt     int
	MaxAttempts int
	// Fence grows by one with every lease and is never reused.
	Fence           int64
	AgentID         string
	LeaseExpiresAt  time.Time
	CancelRequested bool
	// RunnerName and RunnerID name the ephemeral runner Nimbus started for
	// the current lease (GitHub jobs only). The id outlives the lease, so
	// the runner can be removed from GitHub afterwards.
	RunnerName string
	RunnerID   int64

	ExitCode *int
	Reason   string

	CreatedBy string
	CreatedAt time.Time
	NotBefore time.Time
	UpdatedAt time.Time
	// LeasedAt is when an agent first leased the job (zero: never); the
	// job's queue time ends there.
	LeasedAt   time.Time
	StartedAt  time.Time
	FinishedAt time.Time

	GitHub *GitHubJob
}

// AuditEntry is one security-relevant event. The log is append-only.
type AuditEntry struct {
	ID     int64
	At     time.Time
	OrgID  string // empty for installation-wide events
	Actor  string // "user:<token id>", "agent:<id>", "github", "system"
	Action string // e.g. "job.leased", "token.created", "webhook.rejected"
	Target string
	Detail map[string]string
}

// SigningKey signs agent and job credentials. Its private half is sealed
// with the master key.
type SigningKey struct {
	ID            string
	Algorithm     string
	Public        []byte
	PrivateSealed []byte
	CreatedAt     time.Time
	// RetiredAt: no longer signs, still verifies until ExpiresAt.
	RetiredAt time.Time
	ExpiresAt time.Time
	RevokedAt time.Time
}

// Secret is a named secret sealed with the master key (webhook secrets, the
// GitHub App's private key).
type Secret struct {
	Name      string
	Sealed    []byte
	UpdatedAt time.Time
}

// Delivery is a webhook delivery seen once.
type Delivery struct {
	ID         string
	Event      string
	ReceivedAt time.Time
}

// SessionState is where a remote Bazel session is.
type SessionState string

const (
	// SessionPending: scheduled on an agent, which has not started it yet.
	SessionPending SessionState = "pending"
	// SessionReady: its Bazel server runs; proxies may attach.
	SessionReady SessionState = "ready"
	// SessionStopping: asked to stop; the agent has not confirmed yet.
	SessionStopping SessionState = "stopping"
	SessionStopped  SessionState = "stopped"
	SessionFailed   SessionState = "failed"
)

// Live reports whether a session in state s holds an agent's capacity.
func (s SessionState) Live() bool {
	return s == SessionPending || s == SessionReady || s == SessionStopping
}

// Session is a remote Bazel session: one user's Bazel server for one
// workspace, on one agent.
type Session struct {
	ID    string
	OrgID string
	User  string
	// Key is what makes sessions the same: the org, user, repository,
	// Bazel release and startup options. One live session per key.
	Key        string
	RepoHash   string
	InstallMD5 string
	// Request is the proxy's request (paths to mirror, options), as JSON.
	Request    string
	AgentID    string
	State      SessionState
	Address    string
	Reason     string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	LastUsedAt time.Time
	StoppedAt  time.Time
}
