package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
)

// A workflow_job webhook GitHub failed to deliver (the server was
// unreachable; GitHub never retries by itself) is asked for again through
// the App's deliveries API, and its job is created.
func TestE2ELostWebhookRedelivered(t *testing.T) {
	ctx := context.Background()
	gh, keyFile := githubEmulator(t)
	h := apptest.Start(t, "sqlite", func(c *app.ServerConfig) {
		c.GitHubAppID, c.GitHubAppKeyFile, c.GitHubAPIURL = 777, keyFile, gh.URL
		c.GitHubRedeliverInterval = 200 * time.Millisecond
	})
	if _, err := h.Owner().Do(ctx, "POST", "/api/v1/orgs/"+h.OrgID+"/github", apiv1.CreateOrg{GitHubLogin: "octo-org", GitHubID: 6811672}, nil); err != nil {
		t.Fatal(err)
	}
	// The delivery fails: nothing listens where the hook points.
	gh.SetHook("http://127.0.0.1:1/webhooks/github", []byte(h.WebhookSecret))
	body := githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{Action: "queued", InstallationID: 4242, JobID: 5150,
		Labels: []string{"self-hosted", "nimbus"}})
	lost := gh.SendHook(ctx, "workflow_job", body)
	if lost.StatusCode != 0 {
		t.Fatalf("the first delivery reached something: %d", lost.StatusCode)
	}
	// The server is reachable again; the next redelivery round finds the
	// failure and GitHub sends it again, to the server this time.
	gh.SetHook(h.URL+"/webhooks/github", []byte(h.WebhookSecret))
	var list apiv1.JobList
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := h.Owner().Do(ctx, "GET", "/api/v1/jobs", nil, &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Jobs) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no job 30s after the failed delivery; attempts: %+v", gh.HookDeliveries())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(list.Jobs) != 1 || list.Jobs[0].GitHub == nil || list.Jobs[0].GitHub.JobID != 5150 {
		t.Fatalf("jobs: %+v", list.Jobs)
	}
	// Exactly one redelivery, of the same GUID, answered 2xx.
	time.Sleep(time.Second) // a few more rounds: none may redeliver again
	var redeliveries int
	for _, d := range gh.HookDeliveries() {
		if d.Redelivery {
			redeliveries++
			if d.GUID != lost.GUID || d.StatusCode/100 != 2 {
				t.Errorf("redelivery %+v", d)
			}
		}
	}
	if redeliveries != 1 {
		t.Errorf("%d redeliveries, want 1", redeliveries)
	}
}
