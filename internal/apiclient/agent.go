package apiclient

import (
	"context"
	"net/http"

	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// The agent API. The client's token is the agent's credential (for Enroll:
// the one-time join token).

// Enroll exchanges the join token for an agent and its credential.
func (c *Client) Enroll(ctx context.Context, req apiv1.Enroll) (apiv1.Enrolled, error) {
	return get[apiv1.Enrolled](ctx, c, apiv1.RouteAgentEnroll, nil, nil, req)
}

// Refresh returns a fresh credential.
func (c *Client) Refresh(ctx context.Context) (apiv1.Enrolled, error) {
	return get[apiv1.Enrolled](ctx, c, apiv1.RouteAgentRefresh, nil, nil, nil)
}

// Register declares what the agent serves now.
func (c *Client) Register(ctx context.Context, req apiv1.Register) (apiv1.Agent, error) {
	return get[apiv1.Agent](ctx, c, apiv1.RouteAgentRegister, nil, nil, req)
}

// Lease waits up to waitSeconds for a job; nil when none came.
func (c *Client) Lease(ctx context.Context, waitSeconds int) (*apiv1.Lease, error) {
	var l apiv1.Lease
	code, err := c.call(ctx, apiv1.RouteAgentLease, nil, nil, apiv1.LeaseRequest{WaitSeconds: waitSeconds}, &l)
	if err != nil || code == http.StatusNoContent {
		return nil, err
	}
	return &l, nil
}

// Sync renews the agent's leases and waits for a cancellation.
func (c *Client) Sync(ctx context.Context, req apiv1.Sync) (apiv1.Synced, error) {
	return get[apiv1.Synced](ctx, c, apiv1.RouteAgentSync, nil, nil, req)
}

// StartJob says the leased job's workload started.
func (c *Client) StartJob(ctx context.Context, id string, fence int64) (apiv1.Job, error) {
	return get[apiv1.Job](ctx, c, apiv1.RouteAgentStartJob, ids(id), nil, apiv1.Fenced{Fence: fence})
}

// AppendLogs uploads chunks of a leased job's output.
func (c *Client) AppendLogs(ctx context.Context, id string, req apiv1.Logs) (apiv1.LogsAck, error) {
	return get[apiv1.LogsAck](ctx, c, apiv1.RouteAgentJobLogs, ids(id), nil, req)
}

// CompleteJob ends the lease of a job with its outcome, once.
func (c *Client) CompleteJob(ctx context.Context, id string, req apiv1.Complete) (apiv1.Job, error) {
	return get[apiv1.Job](ctx, c, apiv1.RouteAgentCompleteJob, ids(id), nil, req)
}

// RegisterRBS offers remote Bazel and gets the tunnel's certificate.
func (c *Client) RegisterRBS(ctx context.Context, req apiv1.RBSRegister) (apiv1.RBSRegistered, error) {
	return get[apiv1.RBSRegistered](ctx, c, apiv1.RouteAgentRBSRegister, nil, nil, req)
}

// SessionOrders waits for sessions to start and stop.
func (c *Client) SessionOrders(ctx context.Context, req apiv1.SessionsSync) (apiv1.SessionOrders, error) {
	return get[apiv1.SessionOrders](ctx, c, apiv1.RouteAgentSessions, nil, nil, req)
}

// ReportSession reports a session's state.
func (c *Client) ReportSession(ctx context.Context, id string, req apiv1.SessionReport) (apiv1.Session, error) {
	return get[apiv1.Session](ctx, c, apiv1.RouteAgentSession, ids(id), nil, req)
}

// LogsBody is req in its binary form (apiv1.ContentTypeLogs), which agents
// upload: send it with Do to apiv1.PathAgentJob(id, "logs").
func LogsBody(req apiv1.Logs) (Body, error) {
	b, err := apiv1.AppendLogsBinary(nil, req)
	if err != nil {
		return Body{}, err
	}
	return Body{ContentType: apiv1.ContentTypeLogs, Data: b}, nil
}
