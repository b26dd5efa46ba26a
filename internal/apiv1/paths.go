package apiv1

// Paths of the agent API. {id} is a job id.
const (
	PathAgentEnroll   = "/api/v1/agent/enroll"
	PathAgentRefresh  = "/api/v1/agent/refresh"
	PathAgentRegister = "/api/v1/agent/register"
	PathAgentLease    = "/api/v1/agent/lease"
	PathAgentSync     = "/api/v1/agent/sync"
)

// PathAgentJob is the path of a per-job agent call: op is start, logs or
// complete.
func PathAgentJob(jobID, op string) string { return "/api/v1/agent/jobs/" + jobID + "/" + op }

// Lease statuses in Synced.
const (
	LeaseOK     = "ok"
	LeaseCancel = "cancel"
	LeaseLost   = "lost"
)

// Error codes.
const (
	CodeBadRequest      = "bad_request"
	CodeUnauthenticated = "unauthenticated"
	CodeForbidden       = "forbidden"
	CodeNotFound        = "not_found"
	CodeConflict        = "conflict"
	CodeStaleFence      = "stale_fence"
	CodeFinished        = "finished"
	CodeTooLarge        = "too_large"
	CodeUnsupported     = "unsupported_media_type"
	CodeMethod          = "method_not_allowed"
	CodeInternal        = "internal"
	CodeUnavailable     = "unavailable"
	// CodeTimeout (408): the request body came too slowly.
	CodeTimeout = "timeout"
	// CodeTooMany (429): this client, or this job, sends faster than the
	// server takes; the answer's Retry-After says when to try again.
	CodeTooMany = "too_many_requests"
)
