package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
)

// finishJob runs a job of the agent's org through the agent API to end.
func finishJob(t *testing.T, agent *apiclient.Client, state string) string {
	t.Helper()
	ctx := context.Background()
	l, err := agent.Lease(ctx, 5)
	if err != nil || l == nil {
		t.Fatalf("lease: %v %v", l, err)
	}
	if _, err := agent.StartJob(ctx, l.Job.ID, l.Fence); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.CompleteJob(ctx, l.Job.ID, apiv1.Complete{Fence: l.Fence, State: state}); err != nil {
		t.Fatal(err)
	}
	return l.Job.ID
}

// GET /api/v1/insights as attacks: every role of an org reads its own
// org's numbers, another org's tokens see nothing of them, a signed-out
// caller gets 401 and an agent's credential 403, and bad parameters a
// 400 with a JSON body.
func TestInsightsRoute(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	// Org a: its world job fails, a second one passes; org b's passes.
	aFailed := finishJob(t, w.agentC["a"], "failed")
	second, err := w.tokens["a"][auth.RoleDeveloper].SubmitJob(ctx, apiv1.SubmitJob{Argv: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := finishJob(t, w.agentC["a"], "succeeded"); got != second.ID {
		t.Fatalf("leased %s, want %s", got, second.ID)
	}
	bJob := finishJob(t, w.agentC["b"], "succeeded")

	read := func(c *apiclient.Client) (apiv1.Insights, string) {
		t.Helper()
		resp, err := c.Raw(ctx, "GET", apiv1.RouteInsights.URL()+"?since=1d", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out apiv1.Insights
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s", b)
		}
		return out, string(b)
	}
	for _, role := range auth.Roles {
		got, raw := read(w.tokens["a"][role])
		if got.Jobs != 2 || len(got.Labels) != 1 || got.Labels[0].Failed != 1 || got.Labels[0].Succeeded != 1 || got.Labels[0].FailureRate != 0.5 {
			t.Errorf("org a %s: %s", role, raw)
		}
		if strings.Contains(raw, bJob) || strings.Contains(raw, w.orgID["b"]) {
			t.Errorf("org a %s sees org b's: %s", role, raw)
		}
	}
	for role, c := range w.tokens["b"] {
		got, raw := read(c)
		if got.Jobs != 1 || len(got.Labels) != 1 || got.Labels[0].Failed != 0 {
			t.Errorf("org b %s: %s", role, raw)
		}
		if strings.Contains(raw, aFailed) || strings.Contains(raw, second.ID) || strings.Contains(raw, w.orgID["a"]) {
			t.Errorf("org b %s sees org a's: %s", role, raw)
		}
	}
	if _, err := w.h.Client("").Insights(ctx, apiclient.InsightsQuery{}); !apiclient.IsStatus(err, http.StatusUnauthorized) {
		t.Errorf("signed out: %v, want 401", err)
	}
	if _, err := w.h.Client("nmbu_forged0123456789").Insights(ctx, apiclient.InsightsQuery{}); !apiclient.IsStatus(err, http.StatusUnauthorized) {
		t.Errorf("forged token: %v, want 401", err)
	}
	if _, err := w.agentC["a"].Insights(ctx, apiclient.InsightsQuery{}); !apiclient.IsStatus(err, http.StatusForbidden) {
		t.Errorf("agent credential: %v, want 403", err)
	}
	viewer := w.tokens["a"][auth.RoleViewer]
	for _, q := range []string{"since=yesterday", "since=200d", "until=30d&since=1d", "jobs=0", "jobs=10001", "lines=51", "lines=-1",
		"repo=" + strings.Repeat("a", 300)} {
		var ae *apiclient.Error
		_, err := viewer.Do(ctx, "GET", apiv1.RouteInsights.URL()+"?"+q, nil, nil)
		if !asAPIError(err, &ae) || ae.Status != http.StatusBadRequest || ae.Message == "" {
			t.Errorf("%s: %v, want 400 with a message", q, err)
		}
	}
	// A repository filter keeps GitHub jobs of it only: API jobs have none.
	if got, err := viewer.Insights(ctx, apiclient.InsightsQuery{Repo: "acme/web"}); err != nil || got.Jobs != 0 || len(got.Groups) != 0 {
		t.Errorf("repo acme/web: %+v %v", got, err)
	}
}

// A GitHub job that fails and passes on its re-run (same repository,
// workflow, job name and commit) is flagged flaky by GET /api/v1/insights
// with the lines its failed run ended with, all through the real paths:
// signed workflow_job deliveries, leases with runners minted by the GitHub
// emulator, output uploaded by the agent API.
func TestInsightsFlakyGitHubJob(t *testing.T) {
	gh := githubtest.NewServer(t, githubtest.Config{})
	key := githubtest.SharedKey(t)
	gh.AddApp(githubtest.App{ID: 777, PublicKey: &key.PublicKey})
	gh.AddInstallation(githubtest.Installation{ID: 4242, AppID: 777, Account: "octo-org", AccountID: ghOwnerID, AccountType: "Organization"})
	keyFile := filepath.Join(t.TempDir(), "app.pem")
	if err := os.WriteFile(keyFile, githubtest.PKCS1PEM(key), 0o600); err != nil {
		t.Fatal(err)
	}
	h := linkedHarness(t, "sqlite", func(c *app.ServerConfig) { c.GitHubAppID, c.GitHubAppKeyFile, c.GitHubAPIURL = 777, keyFile, gh.URL })
	ctx := context.Background()
	labels := []string{"self-hosted", "linux", "x64"}
	jt, err := h.Owner().CreateJoinToken(ctx, apiv1.CreateJoinToken{Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	en, err := h.Client(jt.Token).Enroll(ctx, apiv1.Enroll{Name: "gh-agent", MaxJobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	agent := h.Client(en.Credential)
	if _, err := agent.Register(ctx, apiv1.Register{Labels: labels, MaxJobs: 1}); err != nil {
		t.Fatal(err)
	}
	attempt := func(n int64, state, output string) string {
		t.Helper()
		if code, res := deliver(t, h, h.WebhookSecret, "workflow_job", fmt.Sprint("flaky-", n),
			payload("queued", func(o *githubtest.WorkflowJobOptions) { o.RunAttempt, o.Name = n, "test" })); code != http.StatusOK || res.JobID == "" {
			t.Fatalf("delivery of attempt %d: %d %+v", n, code, res)
		}
		l, err := agent.Lease(ctx, 5)
		if err != nil || l == nil || l.Runner == nil {
			t.Fatalf("lease: %+v %v", l, err)
		}
		if _, err := agent.StartJob(ctx, l.Job.ID, l.Fence); err != nil {
			t.Fatal(err)
		}
		if _, err := agent.AppendLogs(ctx, l.Job.ID, apiv1.Logs{Fence: l.Fence, End: true,
			Chunks: []apiv1.LogChunk{{Fence: l.Fence, Seq: 0, Data: []byte(output)}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := agent.CompleteJob(ctx, l.Job.ID, apiv1.Complete{Fence: l.Fence, State: state}); err != nil {
			t.Fatal(err)
		}
		return l.Job.ID
	}
	failed := attempt(1, "failed", "Run go test ./...\nok  \texample.com/a\n--- FAIL: TestFlaky (0.20s)\n    flaky_test.go:12: error: connection reset\nFAIL\nexit status 1\n")
	passed := attempt(2, "succeeded", "Run go test ./...\nok  \texample.com/a\nPASS\n")

	got, err := h.Owner().Insights(ctx, apiclient.InsightsQuery{Repo: "octo-org/hello-world", Lines: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Flaky) != 1 {
		t.Fatalf("flaky: %+v", got)
	}
	f := got.Flaky[0]
	var texts []string
	for _, l := range f.Lines {
		texts = append(texts, l.Text)
	}
	f.Lines = nil
	if diff := cmp.Diff(apiv1.FlakyJob{Repo: "octo-org/hello-world", Workflow: "CI", Name: "test", HeadSHA: f.HeadSHA,
		Failed: 1, Succeeded: 1, FailedJob: failed, PassedJob: passed}, f); diff != "" || len(f.HeadSHA) != 40 {
		t.Errorf("flaky (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"--- FAIL: TestFlaky (0.20s)", "    flaky_test.go:12: error: connection reset", "FAIL"}, texts); diff != "" {
		t.Errorf("failing lines (-want +got):\n%s", diff)
	}
	if len(got.Groups) != 1 || got.Groups[0].Repo != "octo-org/hello-world" || got.Groups[0].Name != "test" || got.Groups[0].Labels != "linux,self-hosted,x64" ||
		got.Groups[0].FailureRate != 0.5 || len(got.Groups[0].Days) != 1 {
		t.Errorf("groups: %+v", got.Groups)
	}
}
