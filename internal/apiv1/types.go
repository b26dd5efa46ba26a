// Package apiv1 defines the JSON documents of Nimbus's HTTP API, version 1:
// what the control plane serves and what the agent and `nimbus ctl` send.
// Every request body is decoded strictly (unknown fields are errors).
package apiv1

import "time"

// Error is the body of every 4xx and 5xx answer.
type Error struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody says what went wrong.
type ErrorBody struct {
	// Code is a stable, machine-readable name: bad_request, unauthenticated,
	// forbidden, not_found, conflict, stale_fence, too_large, internal, …
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Job is a job as the API shows it.
type Job struct {
	ID              string            `json:"id"`
	Org             string            `json:"org"`
	Source          string            `json:"source"`
	State           string            `json:"state"`
	Labels          []string          `json:"labels"`
	Argv            []string          `json:"argv,omitempty"`
	Env             map[string]string `json:"env,omitempty"`
	TimeoutSeconds  int64             `json:"timeout_seconds,omitempty"`
	Container       *Container        `json:"container,omitempty"`
	Attempt         int               `json:"attempt"`
	MaxAttempts     int               `json:"max_attempts"`
	Fence           int64             `json:"fence"`
	AgentID         string            `json:"agent_id,omitempty"`
	CancelRequested bool              `json:"cancel_requested,omitempty"`
	ExitCode        *int              `json:"exit_code,omitempty"`
	Reason          string            `json:"reason,omitempty"`
	CreatedBy       string            `json:"created_by,omitempty"`
	// Egress is set by GET /api/v1/jobs/{id} for a job that had a network.
	Egress     *JobEgress `json:"egress,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	NotBefore  time.Time  `json:"not_before"`
	StartedAt  time.Time  `json:"started_at,omitzero"`
	FinishedAt time.Time  `json:"finished_at,omitzero"`
	GitHub     *GitHubJob `json:"github,omitempty"`
}

// GitHubJob is the GitHub side of a job made from a webhook.
type GitHubJob struct {
	Repository   string `json:"repository"`
	JobID        int64  `json:"job_id"`
	RunID        int64  `json:"run_id"`
	RunAttempt   int    `json:"run_attempt"`
	Name         string `json:"name,omitempty"`
	Workflow     string `json:"workflow,omitempty"`
	HeadSHA      string `json:"head_sha,omitempty"`
	HeadBranch   string `json:"head_branch,omitempty"`
	Status       string `json:"status"`
	Conclusion   string `json:"conclusion,omitempty"`
	RunnerName   string `json:"runner_name,omitempty"`
	NimbusRunner string `json:"nimbus_runner,omitempty"`
}

// SubmitJob is the body of POST /api/v1/jobs.
type SubmitJob struct {
	Argv           []string          `json:"argv"`
	Env            map[string]string `json:"env,omitempty"`
	Labels         []string          `json:"labels,omitempty"`
	TimeoutSeconds int64             `json:"timeout_seconds,omitempty"`
	// Container runs the job in a container of this image (on an agent
	// with the Docker executor: the job gets the label "container").
	Container *Container `json:"container,omitempty"`
	// IdempotencyKey makes a retried submission return the first job.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// Container is the image a job runs in, and how.
type Container struct {
	// Image is a reference the agent's Docker Engine resolves
	// (name[:tag] or name@sha256:…).
	Image string `json:"image"`
	// ReadOnlyRoot makes the image's filesystem read-only (the workspace
	// and /tmp stay writable).
	ReadOnlyRoot bool `json:"read_only_root,omitempty"`
}

// ContainerLabel is the label of every job with a container: agents with
// the Docker executor serve it.
const ContainerLabel = "container"

// JobList is the answer of GET /api/v1/jobs.
type JobList struct {
	Jobs []Job `json:"jobs"`
	// Next is the cursor for the following page (?before=), empty at the end.
	Next string `json:"next,omitempty"`
}

// LogChunk is a piece of job output in GET /api/v1/jobs/{id}/logs (one JSON
// document per line when ?format=ndjson).
type LogChunk struct {
	Fence int64  `json:"fence"`
	Seq   int64  `json:"seq"`
	Data  []byte `json:"data"`
}

// LogLine is one line of a job's output in GET /api/v1/jobs/{id}/logs
// (?format=lines: one JSON document per line; ?format=sse: the data of
// each event, whose id is Line) and in log searches.
type LogLine struct {
	Job  string `json:"job"`
	Repo string `json:"repo,omitempty"`
	// Line numbers the job's lines from 1, across its attempts.
	Line int64 `json:"line"`
	// Step is the ::group:: the line is in, if any.
	Step string `json:"step,omitempty"`
	// Stream: "output" (the workload's stdout and stderr, interleaved as
	// written) or "nimbus" (the truncation notice).
	Stream string    `json:"stream"`
	At     time.Time `json:"at"`
	// Text is the line without its ending, ANSI escapes kept.
	Text string `json:"text"`
}

// LogSearch answers GET /api/v1/logs/search: matching lines newest first,
// and how many lines of each job matched (newest job first).
type LogSearch struct {
	Lines []LogLine      `json:"lines"`
	Jobs  []LogSearchJob `json:"jobs"`
	// Partial: a bound of the search (lines examined, bytes, time) was
	// reached: more lines may match; narrow the search.
	Partial bool `json:"partial,omitempty"`
}

// LogSearchJob is how many lines of a job matched a search.
type LogSearchJob struct {
	Job     string    `json:"job"`
	Repo    string    `json:"repo,omitempty"`
	Matches int       `json:"matches"`
	Latest  time.Time `json:"latest"`
}

// Agent is an enrolled agent as the API shows it.
type Agent struct {
	ID            string    `json:"id"`
	Name          string    `json:"name"`
	Labels        []string  `json:"labels"`
	AllowedLabels []string  `json:"allowed_labels"`
	MaxJobs       int       `json:"max_jobs"`
	Hostname      string    `json:"hostname,omitempty"`
	Version       string    `json:"version,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	LastSeenAt    time.Time `json:"last_seen_at,omitzero"`
	Disabled      bool      `json:"disabled"`
	// Status is online (seen within a minute), offline or disabled.
	Status string `json:"status"`
}

// CreateJoinToken is the body of POST /api/v1/agents/join-tokens.
type CreateJoinToken struct {
	Labels         []string `json:"labels"`
	MaxJobs        int      `json:"max_jobs,omitempty"`
	ExpiresSeconds int64    `json:"expires_seconds,omitempty"`
}

// JoinToken is a new join token; the secret is shown once.
type JoinToken struct {
	ID        string    `json:"id"`
	Token     string    `json:"token"`
	Labels    []string  `json:"labels"`
	MaxJobs   int       `json:"max_jobs"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CreateToken is the body of POST /api/v1/tokens.
type CreateToken struct {
	Name           string `json:"name"`
	Role           string `json:"role"`
	ExpiresSeconds int64  `json:"expires_seconds,omitempty"`
}

// Token describes an API token. Secret is set once, in the answer to its
// creation.
type Token struct {
	ID        string    `json:"id"`
	Org       string    `json:"org"`
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Secret    string    `json:"secret,omitempty"`
	CreatedBy string    `json:"created_by,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Org is a tenant.
type Org struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	GitHubLogin string    `json:"github_login,omitempty"`
	GitHubID    int64     `json:"github_id,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// CreateOrg is the body of POST /api/v1/orgs. The answer carries the new
// org and an admin token for it.
type CreateOrg struct {
	Name        string `json:"name"`
	GitHubLogin string `json:"github_login,omitempty"`
	GitHubID    int64  `json:"github_id,omitempty"`
}

// CreatedOrg answers POST /api/v1/orgs.
type CreatedOrg struct {
	Org        Org   `json:"org"`
	AdminToken Token `json:"admin_token"`
}

// AuditEntry is one line of the audit log.
type AuditEntry struct {
	ID     int64             `json:"id"`
	At     time.Time         `json:"at"`
	Actor  string            `json:"actor"`
	Action string            `json:"action"`
	Target string            `json:"target"`
	Detail map[string]string `json:"detail,omitempty"`
}

// CacheTrust is what an org trusts to write its build cache: the answer
// to GET /api/v1/cache/trust, and the body of POST /api/v1/cache/trust
// (which replaces both lists). A pattern is a full ref (refs/heads/main)
// or a prefix ending in "*" (refs/heads/release/*).
type CacheTrust struct {
	// UntrustedRefs: jobs for these refs get read-only cache credentials
	// (as pull requests from forks always do).
	UntrustedRefs []string `json:"untrusted_refs"`
	// ACWriteRefs: trusted jobs for these refs may write the Bazel action
	// cache.
	ACWriteRefs []string  `json:"ac_write_refs"`
	UpdatedBy   string    `json:"updated_by,omitempty"`
	UpdatedAt   time.Time `json:"updated_at,omitzero"`
}

// AuditList answers GET /api/v1/audit.
type AuditList struct {
	Entries []AuditEntry `json:"entries"`
	Next    string       `json:"next,omitempty"`
}

// Whoami answers GET /api/v1/whoami.
type Whoami struct {
	Kind string `json:"kind"`
	Org  string `json:"org"`
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	Role string `json:"role,omitempty"`
}

// WebhookResult answers a GitHub delivery.
type WebhookResult struct {
	// Outcome: created, updated, duplicate, ignored, pong.
	Outcome string `json:"outcome"`
	JobID   string `json:"job_id,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// SigningKey describes a key of the keyring.
type SigningKey struct {
	ID        string    `json:"id"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
	RetiredAt time.Time `json:"retired_at,omitzero"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// WebhookSecret is a new webhook secret, shown once.
type WebhookSecret struct {
	Secret string `json:"secret"`
	// Count is how many secrets are now accepted.
	Count int `json:"count"`
}

// AgentList answers GET /api/v1/agents.
type AgentList struct {
	Agents []Agent `json:"agents"`
}

// TokenList answers GET /api/v1/tokens (never with secrets).
type TokenList struct {
	Tokens []Token `json:"tokens"`
}

// OrgList answers GET /api/v1/orgs.
type OrgList struct {
	Orgs []Org `json:"orgs"`
}

// KeyList answers GET /api/v1/keys and POST /api/v1/keys/rotate.
type KeyList struct {
	Keys []SigningKey `json:"keys"`
}

// SessionList answers GET /api/v1/sessions.
type SessionList struct {
	Sessions []Session `json:"sessions"`
}

// RBSCertificate is the body of POST /api/v1/rbs/certificate: a PEM
// certificate signing request for the proxy's key. The answer is
// RBSRegistered.
type RBSCertificate struct {
	CSR string `json:"csr"`
}
