package agent

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
)

// longPollMargin is added to a long poll's wait to make its deadline: the
// time the answer may take to arrive once the server stops waiting.
const longPollMargin = 15 * time.Second

// controlPlane makes the agent API's calls with the agent's current
// credential. A 401 answer becomes ErrUnauthenticated. It is safe for
// concurrent use; setCredential swaps the credential under running calls.
type controlPlane struct {
	base           apiclient.Client // Token unset: taken from token
	requestTimeout time.Duration

	mu    sync.Mutex
	token string

	// jsonLogs: the server answered 415 to a binary logs upload (a server
	// older than apiv1.ContentTypeLogs); uploads are JSON from then on.
	jsonLogs atomic.Bool
}

func newControlPlane(cfg Config) *controlPlane {
	ua := "nimbus-agent"
	if cfg.Version != "" {
		ua += "/" + cfg.Version
	}
	return &controlPlane{
		base:           apiclient.Client{BaseURL: cfg.Server, HTTP: cfg.HTTPClient, UserAgent: ua},
		requestTimeout: cfg.RequestTimeout,
	}
}

func (c *controlPlane) setCredential(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token = token
}

// call POSTs in to path with the current credential (or with token when it
// is set) and decodes the answer into out. It returns the status code. A
// 401 to the credential is ErrUnauthenticated.
func (c *controlPlane) call(ctx context.Context, timeout time.Duration, token, path string, in, out any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cl := c.base
	cl.Token = token
	if token == "" {
		c.mu.Lock()
		cl.Token = c.token
		c.mu.Unlock()
	}
	status, err := cl.Do(ctx, http.MethodPost, path, in, out)
	if token == "" && apiclient.IsStatus(err, http.StatusUnauthorized) {
		return status, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	return status, err
}

// enroll exchanges a join token for the agent's first credential.
func (c *controlPlane) enroll(ctx context.Context, joinToken string, req apiv1.Enroll) (apiv1.Enrolled, error) {
	var out apiv1.Enrolled
	_, err := c.call(ctx, c.requestTimeout, joinToken, apiv1.PathAgentEnroll, req, &out)
	if apiclient.IsStatus(err, http.StatusUnauthorized) {
		return out, fmt.Errorf("enroll: the server refused the join token (it works once, and may have expired or been revoked): %w", err)
	}
	if err != nil {
		return out, fmt.Errorf("enroll: %w", err)
	}
	return out, nil
}

// refresh exchanges the current credential for a fresh one.
func (c *controlPlane) refresh(ctx context.Context) (apiv1.Enrolled, error) {
	var out apiv1.Enrolled
	if _, err := c.call(ctx, c.requestTimeout, "", apiv1.PathAgentRefresh, struct{}{}, &out); err != nil {
		return out, fmt.Errorf("refresh credential: %w", err)
	}
	return out, nil
}

func (c *controlPlane) register(ctx context.Context, req apiv1.Register) error {
	if _, err := c.call(ctx, c.requestTimeout, "", apiv1.PathAgentRegister, req, nil); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	return nil
}

// lease waits up to wait for a job; it returns nil without error when none
// came.
func (c *controlPlane) lease(ctx context.Context, wait time.Duration) (*apiv1.Lease, error) {
	var out apiv1.Lease
	status, err := c.call(ctx, wait+longPollMargin, "", apiv1.PathAgentLease,
		apiv1.LeaseRequest{WaitSeconds: int(wait / time.Second)}, &out)
	switch {
	case err != nil:
		return nil, fmt.Errorf("lease: %w", err)
	case status == http.StatusNoContent:
		return nil, nil
	}
	return &out, nil
}

func (c *controlPlane) sync(ctx context.Context, req apiv1.Sync) (apiv1.Synced, error) {
	var out apiv1.Synced
	wait := time.Duration(req.WaitSeconds) * time.Second
	if _, err := c.call(ctx, wait+longPollMargin, "", apiv1.PathAgentSync, req, &out); err != nil {
		return out, fmt.Errorf("sync: %w", err)
	}
	return out, nil
}

func (c *controlPlane) start(ctx context.Context, jobID string, fence int64) error {
	if _, err := c.call(ctx, c.requestTimeout, "", apiv1.PathAgentJob(jobID, "start"), apiv1.Fenced{Fence: fence}, nil); err != nil {
		return fmt.Errorf("start job %s: %w", jobID, err)
	}
	return nil
}

// logs uploads chunks and returns the server's acknowledgement: the
// sequence number up to which it holds every chunk, and whether the job's
// log is full. The upload is in the binary form, which costs the server a
// fraction of JSON's CPU; a server that does not know it answers 415
// (and only then: a 400 is a malformed upload, not an old server), and
// the agent sends JSON to it from then on.
func (c *controlPlane) logs(ctx context.Context, jobID string, req apiv1.Logs) (apiv1.LogsAck, error) {
	var out apiv1.LogsAck
	path := apiv1.PathAgentJob(jobID, "logs")
	if !c.jsonLogs.Load() {
		body, err := apiclient.LogsBody(req)
		if err != nil {
			return out, fmt.Errorf("upload logs of job %s: %w", jobID, err)
		}
		_, err = c.call(ctx, c.requestTimeout, "", path, body, &out)
		if !apiclient.IsStatus(err, http.StatusUnsupportedMediaType) {
			if err != nil {
				return apiv1.LogsAck{}, fmt.Errorf("upload logs of job %s: %w", jobID, err)
			}
			return out, nil
		}
		c.jsonLogs.Store(true)
	}
	if _, err := c.call(ctx, c.requestTimeout, "", path, req, &out); err != nil {
		return apiv1.LogsAck{}, fmt.Errorf("upload logs of job %s: %w", jobID, err)
	}
	return out, nil
}

func (c *controlPlane) complete(ctx context.Context, jobID string, req apiv1.Complete) error {
	if _, err := c.call(ctx, c.requestTimeout, "", apiv1.PathAgentJob(jobID, "complete"), req, nil); err != nil {
		return fmt.Errorf("complete job %s: %w", jobID, err)
	}
	return nil
}
