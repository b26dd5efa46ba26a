package app_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
)

// jobCache is a leased job's view of the build cache, through the
// credential its lease handed it.
type jobCache struct {
	t     *testing.T
	h     *apptest.Harness
	agent string // the agent's credential
	lease apiv1.Lease
	ac    repb.ActionCacheClient
}

func leaseJob(t *testing.T, h *apptest.Harness, submitter *apiclient.Client) *jobCache {
	t.Helper()
	ctx := context.Background()
	var j apiv1.Job
	if _, err := submitter.Do(ctx, "POST", "/api/v1/jobs", apiv1.SubmitJob{Argv: []string{"true"}, TimeoutSeconds: 120}, &j); err != nil {
		t.Fatal(err)
	}
	var en apiv1.Enrolled
	if _, err := h.Client(h.JoinToken("linux")).Do(ctx, "POST", apiv1.PathAgentEnroll, apiv1.Enroll{Name: "a-" + j.ID, MaxJobs: 1}, &en); err != nil {
		t.Fatal(err)
	}
	c := &jobCache{t: t, h: h, agent: en.Credential}
	if code, err := h.Client(en.Credential).Do(ctx, "POST", apiv1.PathAgentLease, apiv1.LeaseRequest{WaitSeconds: 5}, &c.lease); err != nil || code != 200 {
		t.Fatalf("lease: %d %v", code, err)
	}
	if c.lease.Job.ID != j.ID {
		t.Fatalf("leased %s, want %s", c.lease.Job.ID, j.ID)
	}
	grpcURL := c.lease.Env["NIMBUS_CACHE_URL"]
	if !strings.HasPrefix(grpcURL, "grpc://127.0.0.1:") || !strings.HasPrefix(c.lease.Env["ACTIONS_CACHE_URL"], h.URL) {
		t.Fatalf("lease env: %v", c.lease.Env)
	}
	conn, err := grpc.NewClient(strings.TrimPrefix(grpcURL, "grpc://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c.ac = repb.NewActionCacheClient(conn)
	return c
}

func (c *jobCache) token() string { return c.lease.Env["ACTIONS_RUNTIME_TOKEN"] }

// put is the repro: curl -X PUT --data-binary @poison
// -H "Authorization: Bearer $JT" …/cache/cas/<sha>.
func (c *jobCache) put(blob []byte) int {
	sum := sha256.Sum256(blob)
	req, _ := http.NewRequest("PUT", c.h.URL+"/cache/cas/"+hex.EncodeToString(sum[:]), bytes.NewReader(blob))
	req.Header.Set("Authorization", "Bearer "+c.token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (c *jobCache) get(blob []byte, token string) int {
	sum := sha256.Sum256(blob)
	req, _ := http.NewRequest("GET", c.h.URL+"/cache/cas/"+hex.EncodeToString(sum[:]), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// updateAC is the gRPC UpdateActionResult.
func (c *jobCache) updateAC() codes.Code {
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+c.token())
	empty := sha256.Sum256(nil)
	_, err := c.ac.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{
		ActionDigest: &repb.Digest{Hash: hex.EncodeToString(empty[:]), SizeBytes: 0},
		ActionResult: &repb.ActionResult{ExitCode: 0},
	})
	return status.Code(err)
}

func (c *jobCache) complete() {
	c.t.Helper()
	if _, err := c.h.Client(c.agent).Do(context.Background(), "POST", apiv1.PathAgentJob(c.lease.Job.ID, "complete"),
		apiv1.Complete{Fence: c.lease.Fence, State: "succeeded"}, nil); err != nil {
		c.t.Fatal(err)
	}
}

// A leased job of a CI token reads and writes its org's cache while it
// runs, and its credential dies with the job: the repro (a PUT to
// /cache/cas and a gRPC UpdateActionResult with a finished job's token)
// fails.
func TestJobCacheCredentialDiesWithTheJob(t *testing.T) {
	ctx := context.Background()
	h := apptest.Start(t, "sqlite")
	var ci apiv1.Token
	if _, err := h.Owner().Do(ctx, "POST", "/api/v1/tokens", apiv1.CreateToken{Name: "ci", Role: "ci"}, &ci); err != nil {
		t.Fatal(err)
	}
	c := leaseJob(t, h, h.Client(ci.Secret))
	blob := []byte("cached by a job")
	if got := c.put(blob); got != http.StatusOK {
		t.Fatalf("live job PUT: %d", got)
	}
	if got := c.updateAC(); got != codes.OK {
		t.Fatalf("live job UpdateActionResult: %v", got)
	}
	if got := c.get(blob, c.token()); got != http.StatusOK {
		t.Errorf("live job GET: %d", got)
	}
	// The same blob is invisible to another org.
	var other apiv1.CreatedOrg
	if _, err := h.Owner().Do(ctx, "POST", "/api/v1/orgs", apiv1.CreateOrg{Name: "other"}, &other); err != nil {
		t.Fatal(err)
	}
	if got := c.get(blob, other.AdminToken.Secret); got != http.StatusNotFound {
		t.Errorf("other org GET: %d, want 404", got)
	}
	// The job credential is no API token.
	if _, err := h.Client(c.token()).Do(ctx, "GET", "/api/v1/jobs", nil, nil); !apiclient.IsStatus(err, http.StatusForbidden) {
		t.Errorf("job credential on the API: %v, want 403", err)
	}

	c.complete()
	if got := c.put([]byte("poison")); got != http.StatusUnauthorized {
		t.Errorf("finished job PUT /cache/cas: %d, want 401", got)
	}
	if got := c.updateAC(); got != codes.Unauthenticated {
		t.Errorf("finished job UpdateActionResult: %v, want Unauthenticated", got)
	}
	if got := c.get(blob, c.token()); got != http.StatusUnauthorized {
		t.Errorf("finished job GET: %d, want 401", got)
	}
}

// A job never gets more than its submitter may do: a developer (who may
// read the cache but not write it) submits a job, and the job's credential
// reads and cannot write; a cancel ends it.
func TestDevelopersJobCannotWriteTheCache(t *testing.T) {
	ctx := context.Background()
	h := apptest.Start(t, "sqlite")
	var dev apiv1.Token
	if _, err := h.Owner().Do(ctx, "POST", "/api/v1/tokens", apiv1.CreateToken{Name: "dev", Role: "developer"}, &dev); err != nil {
		t.Fatal(err)
	}
	c := leaseJob(t, h, h.Client(dev.Secret))
	if !strings.Contains(c.lease.Env["NIMBUS_BAZEL_FLAGS"], "--remote_upload_local_results=false") {
		t.Errorf("a job that may not write the action cache is not told so: %q", c.lease.Env["NIMBUS_BAZEL_FLAGS"])
	}
	if got := c.put([]byte("poison")); got != http.StatusForbidden {
		t.Errorf("developer's job PUT: %d, want 403", got)
	}
	if got := c.updateAC(); got != codes.PermissionDenied {
		t.Errorf("developer's job UpdateActionResult: %v, want PermissionDenied", got)
	}
	if got := c.get([]byte("never stored"), c.token()); got != http.StatusNotFound {
		t.Errorf("developer's job GET: %d, want 404 (it may read)", got)
	}
	if _, err := h.Client(dev.Secret).Do(ctx, "POST", "/api/v1/jobs/"+c.lease.Job.ID+"/cancel", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := c.get([]byte("never stored"), c.token()); got != http.StatusUnauthorized {
		t.Errorf("cancelled job GET: %d, want 401", got)
	}
}

// The trust of a GitHub job comes from its source, which the control plane
// asks GitHub for (a workflow_job webhook does not say): a pull request
// from a fork, even one whose branch is called main, gets a read-only
// cache credential, restores the default branch's entries and cannot save
// one that a default-branch job would restore.
func TestForkPullRequestJobIsReadOnly(t *testing.T) {
	ctx := context.Background()
	gh, keyFile := githubEmulator(t)
	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) {
		c.GitHubAppID, c.GitHubAppKeyFile, c.GitHubAPIURL = 777, keyFile, gh.URL
	})
	if _, err := h.Owner().Do(ctx, "POST", "/api/v1/orgs/"+h.OrgID+"/github", apiv1.CreateOrg{GitHubLogin: "octo-org", GitHubID: 6811672}, nil); err != nil {
		t.Fatal(err)
	}
	const repo, repoID = "octo-org/hello-world", int64(186853002)
	gh.AddWorkflowRun(githubtest.WorkflowRun{ID: 101, Repo: repo, RepoID: repoID, Event: "push", HeadBranch: "main"})
	gh.AddWorkflowRun(githubtest.WorkflowRun{ID: 102, Repo: repo, RepoID: repoID, Event: "pull_request", HeadBranch: "main",
		HeadRepoID: 999, HeadOwner: "mallory"})
	gh.AddPullRequest(repo, githubtest.PullRequest{Number: 5, BaseRepoID: repoID, BaseRef: "main", HeadRef: "main", HeadOwner: "mallory", HeadRepoID: 999})
	for i, run := range []int64{101, 102} {
		body := githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{Action: "queued", InstallationID: 4242,
			JobID: 500 + int64(i), RunID: run, Labels: []string{"self-hosted", "nimbus"}})
		resp, err := githubtest.Deliver(ctx, nil, h.URL+"/webhooks/github", []byte(h.WebhookSecret), "workflow_job", fmt.Sprint("fork-", i), body)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	var en apiv1.Enrolled
	if _, err := h.Client(h.JoinToken("self-hosted", "nimbus")).Do(ctx, "POST", apiv1.PathAgentEnroll, apiv1.Enroll{Name: "gh", MaxJobs: 2}, &en); err != nil {
		t.Fatal(err)
	}
	tokens := map[int64]string{}
	for range 2 {
		var l apiv1.Lease
		if code, err := h.Client(en.Credential).Do(ctx, "POST", apiv1.PathAgentLease, apiv1.LeaseRequest{WaitSeconds: 5}, &l); err != nil || code != 200 {
			t.Fatalf("lease: %d %v", code, err)
		}
		tokens[l.Job.GitHub.RunID] = l.Env["ACTIONS_RUNTIME_TOKEN"]
	}
	mainJob, forkJob := tokens[101], tokens[102]
	if mainJob == "" || forkJob == "" {
		t.Fatalf("cache credentials: %v", tokens)
	}
	v1 := h.URL + "/actions-cache/_apis/artifactcache/"
	call := func(token, method, url, body string) (int, string) {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		if strings.HasPrefix(body, "x") {
			req.Header.Set("Content-Range", fmt.Sprintf("bytes 0-%d/*", len(body)-1))
			req.Header.Set("Content-Type", "application/octet-stream")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	save := func(token, key string) int {
		code, body := call(token, "POST", v1+"caches", `{"key": "`+key+`", "version": "v1", "cacheSize": 4}`)
		if code != http.StatusCreated {
			return code
		}
		var r struct{ CacheID int64 }
		json.Unmarshal([]byte(body), &r)
		if code, body := call(token, "PATCH", fmt.Sprint(v1, "caches/", r.CacheID), "xxxx"); code != http.StatusNoContent {
			t.Fatalf("upload: %d %s", code, body)
		}
		code, _ = call(token, "POST", fmt.Sprint(v1, "caches/", r.CacheID), `{"size": 4}`)
		return code
	}
	restore := func(token string, keys string) string {
		code, body := call(token, "GET", v1+"cache?version=v1&keys="+keys, "")
		if code == http.StatusNoContent {
			return ""
		}
		var r struct{ CacheKey string }
		json.Unmarshal([]byte(body), &r)
		return r.CacheKey
	}
	if got := save(mainJob, "deps-1"); got != http.StatusNoContent {
		t.Fatalf("default branch job's save: %d", got)
	}
	if got := save(forkJob, "deps-2"); got != http.StatusForbidden {
		t.Errorf("fork job's save: %d, want 403", got)
	}
	if got := restore(forkJob, "deps-"); got != "deps-1" {
		t.Errorf("fork job restored %q, want the default branch's deps-1", got)
	}
	if got := restore(mainJob, "deps-2,deps-"); got != "deps-1" {
		t.Errorf("default branch job restored %q, want its own deps-1", got)
	}
	sum := sha256.Sum256([]byte("poison"))
	if code, _ := call(forkJob, "PUT", h.URL+"/cache/cas/"+hex.EncodeToString(sum[:]), "poison"); code != http.StatusForbidden {
		t.Errorf("fork job's CAS PUT: %d, want 403", code)
	}
}
