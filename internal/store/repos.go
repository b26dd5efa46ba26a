package store

import (
	"context"
	"time"
)

// Orgs holds tenants.
type Orgs interface {
	Create(ctx context.Context, o Org) error
	Get(ctx context.Context, id string) (Org, error)
	GetByName(ctx context.Context, name string) (Org, error)
	// GetByGitHubOwner finds the org linked to a GitHub account id.
	GetByGitHubOwner(ctx context.Context, ownerID int64) (Org, error)
	List(ctx context.Context) ([]Org, error)
	// LinkGitHub links an org to a GitHub account; ErrConflict when another
	// org has it.
	LinkGitHub(ctx context.Context, id string, ownerID int64, login string) error
	// Lock holds the org until the transaction ends (PostgreSQL; SQLite
	// has one writer anyway), so that changes to who may act in it (its
	// tokens) are made one at a time across replicas. Use it inside InTx.
	// ErrNotFound when there is no such org.
	Lock(ctx context.Context, id string) error
	// CacheTrust returns what the org trusts to write its build cache;
	// ErrNotFound when it never set it (the defaults apply).
	CacheTrust(ctx context.Context, orgID string) (CacheTrust, error)
	// SetCacheTrust replaces the org's cache trust settings.
	SetCacheTrust(ctx context.Context, t CacheTrust) error
}

// Tokens holds API tokens and agent join tokens, by hash.
type Tokens interface {
	CreateAPIToken(ctx context.Context, t APIToken) error
	// APITokenByHash returns the token whatever its state; the caller
	// checks expiry and revocation.
	APITokenByHash(ctx context.Context, hash []byte) (APIToken, error)
	ListAPITokens(ctx context.Context, orgID string) ([]APIToken, error)
	// GetAPIToken returns a token by id whatever its state; ErrNotFound
	// when there is none.
	GetAPIToken(ctx context.Context, id string) (APIToken, error)
	// RevokeAPIToken revokes a token of orgID; ErrNotFound if there is none.
	RevokeAPIToken(ctx context.Context, orgID, id string, at time.Time) error

	CreateJoinToken(ctx context.Context, t JoinToken) error
	// ConsumeJoinToken marks the token with this hash used by agentID. It
	// fails with ErrTokenUsed if it was used or has expired, atomically, so
	// a token enrolls exactly one agent.
	ConsumeJoinToken(ctx context.Context, hash []byte, agentID string, now time.Time) (JoinToken, error)
}

// Agents holds enrolled hosts.
type Agents interface {
	Create(ctx context.Context, a Agent) error
	Get(ctx context.Context, id string) (Agent, error)
	List(ctx context.Context, orgID string) ([]Agent, error)
	// Register records what a starting agent declares about itself.
	Register(ctx context.Context, id string, labels []string, maxJobs int, hostname, version string, now time.Time) error
	Touch(ctx context.Context, id string, now time.Time) error
	Disable(ctx context.Context, orgID, id string, at time.Time) error
	// SetRBS records an agent's remote Bazel offer (nil: none).
	SetRBS(ctx context.Context, id string, rbs *AgentRBS) error
}

// JobFilter selects jobs for listing, newest first.
type JobFilter struct {
	OrgID string
	State JobState // empty: any
	// Before is a job id: list jobs created before it (pagination).
	Before string
	Limit  int
}

// LeaseRequest asks for the next job an agent may run.
type LeaseRequest struct {
	OrgID   string
	AgentID string
	// Labels the agent serves: a job matches when all its labels are here.
	Labels  []string
	MaxJobs int
	TTL     time.Duration
	Now     time.Time
}

// Outcome is how a lease ended.
type Outcome struct {
	State    JobState // succeeded, failed or cancelled
	ExitCode *int
	Reason   string
}

// Expired reports what the reaper did with one expired lease.
type Expired struct {
	Job Job
	// Requeued is true when the job went back to the queue, false when it
	// ran out of attempts (or was being cancelled) and was finished.
	Requeued bool
}

// Jobs holds the queue and every job's state. The state machine is
// enforced here: every change is one conditional statement, so it holds
// under concurrency and across replicas.
type Jobs interface {
	// Create inserts j. If j.Key is set and a job with that key exists,
	// it returns the existing job and created=false.
	Create(ctx context.Context, j Job) (job Job, created bool, err error)
	Get(ctx context.Context, id string) (Job, error)
	GetByKey(ctx context.Context, key string) (Job, error)
	// GetForUpdate reads a job by key and locks it until the transaction
	// ends (PostgreSQL); use it inside InTx.
	GetForUpdate(ctx context.Context, key string) (Job, error)
	// FindByRunner returns the job whose current lease started the
	// runner with this name.
	FindByRunner(ctx context.Context, runnerName string) (Job, error)
	List(ctx context.Context, f JobFilter) ([]Job, error)
	// UpdateGitHub stores the GitHub side of a job (what webhooks report).
	UpdateGitHub(ctx context.Context, id string, gh GitHubJob, now time.Time) error

	// Lease hands the oldest matching queued job to the agent, raising its
	// fence. ErrNotFound when there is none or the agent is at MaxJobs.
	Lease(ctx context.Context, r LeaseRequest) (Job, error)
	// SetRunner records the ephemeral runner started for the current lease.
	SetRunner(ctx context.Context, id string, fence int64, runnerName string, runnerID int64) error
	// Renew extends a live lease. It returns the job so the agent learns
	// about cancellation. ErrStaleFence or ErrFinished when the lease is
	// no longer the agent's.
	Renew(ctx context.Context, id, agentID string, fence int64, ttl time.Duration, now time.Time) (Job, error)
	// Start moves a leased job to running.
	Start(ctx context.Context, id, agentID string, fence int64, now time.Time) (Job, error)
	// Finish ends a live lease, exactly once.
	Finish(ctx context.Context, id, agentID string, fence int64, o Outcome, now time.Time) (Job, error)
	// Release gives a lease back without running it (the runner could not
	// be prepared): the job is queued again, available after notBefore.
	Release(ctx context.Context, id string, fence int64, notBefore time.Time, reason string, now time.Time) (Job, error)
	// CheckLease returns the job if (agentID, fence) holds its live lease.
	CheckLease(ctx context.Context, id, agentID string, fence int64) (Job, error)
	// RequestCancel cancels a queued job at once, and flags a live one so
	// its agent stops it. Finished jobs are returned unchanged.
	RequestCancel(ctx context.Context, orgID, id, reason string, now time.Time) (Job, error)
	// ExpireLeases requeues jobs whose lease expired before now (attempt+1),
	// fails them once they have used MaxAttempts, and cancels those whose
	// cancellation was pending.
	ExpireLeases(ctx context.Context, now time.Time) ([]Expired, error)
	// CountByState counts jobs per state, for metrics.
	CountByState(ctx context.Context) (map[JobState]int, error)
}

// AuditFilter selects audit entries, newest first.
type AuditFilter struct {
	OrgID string
	// Installation adds the installation-wide entries (no org: rejected
	// webhooks, for instance), for owners.
	Installation bool
	BeforeID     int64 // 0: from the newest
	Limit        int
}

// Audit is the append-only audit log.
type Audit interface {
	Append(ctx context.Context, e AuditEntry) error
	List(ctx context.Context, f AuditFilter) ([]AuditEntry, error)
}

// Keys holds signing keys and sealed secrets.
type Keys interface {
	CreateSigningKey(ctx context.Context, k SigningKey) error
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)
	// UpdateSigningKey stores k's sealed private key and its retire, expiry
	// and revocation times.
	UpdateSigningKey(ctx context.Context, k SigningKey) error
	PutSecret(ctx context.Context, s Secret) error
	GetSecret(ctx context.Context, name string) (Secret, error)
	ListSecrets(ctx context.Context) ([]Secret, error)
}

// SessionFilter selects sessions, newest first.
type SessionFilter struct {
	OrgID    string
	User     string // empty: every user of the org
	AgentID  string // empty: any agent
	LiveOnly bool
	Limit    int
}

// Sessions holds remote Bazel sessions.
type Sessions interface {
	// Create inserts a session; ErrConflict when a live session has its key.
	Create(ctx context.Context, s Session) error
	Get(ctx context.Context, id string) (Session, error)
	// GetLive returns the live session with this key.
	GetLive(ctx context.Context, key string) (Session, error)
	List(ctx context.Context, f SessionFilter) ([]Session, error)
	// CountLive counts the live sessions of an agent.
	CountLive(ctx context.Context, agentID string) (int, error)
	// Transition moves a session from one of the states from to state to,
	// setting address and reason when given; ErrNotFound when it is in
	// none of them (or does not exist).
	Transition(ctx context.Context, id string, from []SessionState, to SessionState, address, reason string, now time.Time) (Session, error)
	// Touch records a use (a proxy's heartbeat), postponing idle reaping.
	Touch(ctx context.Context, id string, now time.Time) error
	// Idle lists live sessions not used since before.
	Idle(ctx context.Context, before time.Time) ([]Session, error)
}

// Deliveries remembers webhook deliveries so a redelivery is recognised.
type Deliveries interface {
	// Record stores d and reports whether it was new.
	Record(ctx context.Context, d Delivery) (bool, error)
	// Seen reports whether the delivery id was recorded (and not pruned).
	Seen(ctx context.Context, id string) (bool, error)
	// Prune forgets deliveries received before t.
	Prune(ctx context.Context, before time.Time) (int, error)
}
