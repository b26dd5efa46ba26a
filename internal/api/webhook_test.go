package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

const ghOwnerID = 6811672 // githubtest's default owner, octo-org

func linkedHarness(t *testing.T, engine string, opts ...apptest.Option) *apptest.Harness {
	h := apptest.Start(t, engine, opts...)
	must(t, h.Owner(), "POST", "/api/v1/orgs/"+h.OrgID+"/github", apiv1.CreateOrg{GitHubLogin: "octo-org", GitHubID: ghOwnerID}, nil)
	return h
}

func deliver(t *testing.T, h *apptest.Harness, secret, event, id string, body []byte) (int, apiv1.WebhookResult) {
	t.Helper()
	resp, err := githubtest.Deliver(context.Background(), nil, h.URL+"/webhooks/github", []byte(secret), event, id, body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res apiv1.WebhookResult
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &res)
	if resp.StatusCode >= 500 {
		t.Errorf("delivery %s: %d %s", id, resp.StatusCode, b)
	}
	return resp.StatusCode, res
}

func githubJobs(t *testing.T, h *apptest.Harness) []apiv1.Job {
	t.Helper()
	var list apiv1.JobList
	must(t, h.Owner(), "GET", "/api/v1/jobs?limit=500", nil, &list)
	var out []apiv1.Job
	for _, j := range list.Jobs {
		if j.Source == "github" {
			out = append(out, j)
		}
	}
	return out
}

func payload(action string, mod ...func(*githubtest.WorkflowJobOptions)) []byte {
	o := githubtest.WorkflowJobOptions{Action: action, InstallationID: 4242}
	for _, m := range mod {
		m(&o)
	}
	return githubtest.WorkflowJobPayload(o)
}

// A replayed delivery and a redelivery (same job, new delivery id) never
// make a second job; a new run attempt does.
func TestWebhookReplayAndRedelivery(t *testing.T) {
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			h := linkedHarness(t, engine)
			code, res := deliver(t, h, h.WebhookSecret, "workflow_job", "d-1", payload("queued"))
			if code != http.StatusOK || res.Outcome != "created" || res.JobID == "" {
				t.Fatalf("first delivery: %d %+v", code, res)
			}
			if _, res := deliver(t, h, h.WebhookSecret, "workflow_job", "d-1", payload("queued")); res.Outcome != "duplicate" {
				t.Errorf("replay: %+v", res)
			}
			if _, res2 := deliver(t, h, h.WebhookSecret, "workflow_job", "d-2", payload("queued")); res2.Outcome != "updated" || res2.JobID != res.JobID {
				t.Errorf("redelivery: %+v", res2)
			}
			deliver(t, h, h.WebhookSecret, "workflow_job", "d-3", payload("queued", func(o *githubtest.WorkflowJobOptions) { o.RunAttempt = 2 }))
			jobs := githubJobs(t, h)
			if len(jobs) != 2 {
				t.Fatalf("%d github jobs, want 2 (attempts 1 and 2)", len(jobs))
			}
			j := jobs[1]
			if j.State != "queued" || j.GitHub.Repository != "octo-org/hello-world" || strings.Join(j.Labels, ",") != "linux,self-hosted,x64" {
				t.Errorf("job: %+v %+v", j, j.GitHub)
			}
		})
	}
}

// Deliveries out of order: nothing is resurrected, completed settles.
func TestWebhookOutOfOrder(t *testing.T) {
	h := linkedHarness(t, "sqlite")
	// in_progress before queued: some runner already took it.
	_, res := deliver(t, h, h.WebhookSecret, "workflow_job", "o-1", payload("in_progress", func(o *githubtest.WorkflowJobOptions) { o.RunnerName = "someone-else" }))
	if res.Outcome != "created" {
		t.Fatalf("in_progress first: %+v", res)
	}
	_, late := deliver(t, h, h.WebhookSecret, "workflow_job", "o-2", payload("queued"))
	if late.Outcome != "updated" {
		t.Errorf("late queued: %+v", late)
	}
	deliver(t, h, h.WebhookSecret, "workflow_job", "o-3", payload("completed", func(o *githubtest.WorkflowJobOptions) { o.Conclusion = "failure" }))
	jobs := githubJobs(t, h)
	if len(jobs) != 1 {
		t.Fatalf("%d jobs", len(jobs))
	}
	j := jobs[0]
	if j.State != "cancelled" || j.GitHub.Status != "completed" || j.GitHub.Conclusion != "failure" || j.GitHub.RunnerName != "someone-else" {
		t.Errorf("job after out-of-order deliveries: state %s github %+v", j.State, j.GitHub)
	}
	// A queued job that GitHub completes before any runner started is
	// cancelled; one that is taken by another runner too.
	deliver(t, h, h.WebhookSecret, "workflow_job", "o-4", payload("queued", func(o *githubtest.WorkflowJobOptions) { o.JobID = 2 }))
	deliver(t, h, h.WebhookSecret, "workflow_job", "o-5", payload("completed", func(o *githubtest.WorkflowJobOptions) {
		o.JobID, o.Conclusion = 2, "cancelled"
	}))
	for _, j := range githubJobs(t, h) {
		if j.GitHub.JobID == 2 && (j.State != "cancelled" || !strings.Contains(j.Reason, "completed on GitHub")) {
			t.Errorf("job 2: %s %q", j.State, j.Reason)
		}
	}
}

func TestWebhookRejections(t *testing.T) {
	h := linkedHarness(t, "sqlite")
	body := payload("queued")
	post := func(hdr http.Header, b []byte) int {
		req, _ := http.NewRequest("POST", h.URL+"/webhooks/github", bytes.NewReader(b))
		req.Header = hdr
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	good := githubtest.DeliveryHeaders([]byte(h.WebhookSecret), "workflow_job", "r-1", body)
	for name, tc := range map[string]struct {
		hdr  func() http.Header
		body []byte
		want int
	}{
		"wrong secret": {func() http.Header {
			return githubtest.DeliveryHeaders([]byte("not-the-secret"), "workflow_job", "r-2", body)
		}, body, 401},
		"no signature":  {func() http.Header { return githubtest.DeliveryHeaders(nil, "workflow_job", "r-3", body) }, body, 401},
		"tampered body": {func() http.Header { return good.Clone() }, bytes.Replace(body, []byte(`"queued"`), []byte(`"completed"`), 1), 401},
		"no delivery id": {func() http.Header {
			x := good.Clone()
			x.Del("X-GitHub-Delivery")
			return x
		}, body, 400},
		"bad json": {func() http.Header {
			return githubtest.DeliveryHeaders([]byte(h.WebhookSecret), "workflow_job", "r-4", []byte("{"))
		}, []byte("{"), 400},
	} {
		if got := post(tc.hdr(), tc.body); got != tc.want {
			t.Errorf("%s: %d, want %d", name, got, tc.want)
		}
	}
	big := bytes.Repeat([]byte(" "), 26<<20)
	if got := post(githubtest.DeliveryHeaders([]byte(h.WebhookSecret), "workflow_job", "r-5", big), big); got != http.StatusRequestEntityTooLarge {
		t.Errorf("26 MB body: %d, want 413", got)
	}
	if len(githubJobs(t, h)) != 0 {
		t.Errorf("a rejected delivery created a job")
	}
	var audit apiv1.AuditList
	must(t, h.Owner(), "GET", "/api/v1/audit", nil, &audit)
	rejected := 0
	for _, e := range audit.Entries {
		if e.Action == "webhook.rejected" {
			rejected++
		}
	}
	if rejected < 3 {
		t.Errorf("%d rejected webhooks in the audit log, want the 3 bad signatures", rejected)
	}
	// What is not a job of ours is acknowledged and ignored.
	if code, res := deliver(t, h, h.WebhookSecret, "ping", "p-1", githubtest.PingPayload(1, 2)); code != 200 || res.Outcome != "pong" {
		t.Errorf("ping: %d %+v", code, res)
	}
	if code, res := deliver(t, h, h.WebhookSecret, "push", "p-2", []byte(`{}`)); code != 202 || res.Outcome != "ignored" {
		t.Errorf("push: %d %+v", code, res)
	}
	if _, res := deliver(t, h, h.WebhookSecret, "workflow_job", "p-3", payload("queued", func(o *githubtest.WorkflowJobOptions) { o.Labels = []string{"ubuntu-latest"} })); res.Outcome != "ignored" {
		t.Errorf("hosted-runner labels: %+v", res)
	}
	if _, res := deliver(t, h, h.WebhookSecret, "workflow_job", "p-4", payload("queued", func(o *githubtest.WorkflowJobOptions) { o.OwnerID, o.Owner = 1, "stranger" })); res.Outcome != "ignored" {
		t.Errorf("unconnected owner: %+v", res)
	}
	if n := len(githubJobs(t, h)); n != 0 {
		t.Errorf("%d jobs from ignored deliveries", n)
	}
}

func TestWebhookSecretRotation(t *testing.T) {
	h := linkedHarness(t, "sqlite")
	var rot apiv1.WebhookSecret
	must(t, h.Owner(), "POST", "/api/v1/webhook-secrets/rotate", struct{}{}, &rot)
	if rot.Count != 2 || rot.Secret == "" {
		t.Fatalf("rotate: %+v", rot)
	}
	// The server caches secrets for a few seconds: poll.
	waitFor(t, func() bool {
		code, _ := deliver(t, h, rot.Secret, "ping", fmt.Sprint("n-", time.Now().UnixNano()), githubtest.PingPayload(1, 2))
		return code == 200
	})
	if code, _ := deliver(t, h, h.WebhookSecret, "ping", "old-1", githubtest.PingPayload(1, 2)); code != 200 {
		t.Errorf("old secret during the overlap: %d", code)
	}
	must(t, h.Owner(), "POST", "/api/v1/webhook-secrets/retire", struct{}{}, nil)
	waitFor(t, func() bool {
		code, _ := deliver(t, h, h.WebhookSecret, "ping", fmt.Sprint("o-", time.Now().UnixNano()), githubtest.PingPayload(1, 2))
		return code == 401
	})
}

// Per-org rate limits defer jobs, never drop them.
func TestWebhookRateLimitDefers(t *testing.T) {
	h := linkedHarness(t, "sqlite", func(c *app.ServerConfig) { c.OrgJobRate, c.OrgJobBurst = 1, 2 })
	for i := range 5 {
		_, res := deliver(t, h, h.WebhookSecret, "workflow_job", fmt.Sprint("rl-", i), payload("queued", func(o *githubtest.WorkflowJobOptions) { o.JobID = int64(100 + i) }))
		if res.Outcome != "created" {
			t.Fatalf("delivery %d: %+v", i, res)
		}
	}
	jobs := githubJobs(t, h)
	if len(jobs) != 5 {
		t.Fatalf("%d jobs, want all 5", len(jobs))
	}
	deferred := 0
	for _, j := range jobs {
		if j.NotBefore.Sub(j.CreatedAt) > 500*time.Millisecond {
			deferred++
		}
	}
	if deferred < 2 {
		t.Errorf("%d jobs deferred, want at least 2 beyond the burst", deferred)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
