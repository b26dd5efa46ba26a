package dashboard_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
)

// The insights page shows internal/insights' report of the session's org
// (the API's numbers), and nothing of another org's jobs.
func TestInsightsPage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	runJobs := func(c *apiclient.Client, states ...string) []string {
		t.Helper()
		jt, err := c.CreateJoinToken(ctx, apiv1.CreateJoinToken{Labels: []string{"linux"}})
		if err != nil {
			t.Fatal(err)
		}
		en, err := e.h.Client(jt.Token).Enroll(ctx, apiv1.Enroll{Name: "insights", MaxJobs: 1})
		if err != nil {
			t.Fatal(err)
		}
		agent := e.h.Client(en.Credential)
		var ids []string
		for _, state := range states {
			if _, err := c.SubmitJob(ctx, apiv1.SubmitJob{Argv: []string{"true"}, Labels: []string{"linux"}}); err != nil {
				t.Fatal(err)
			}
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
			ids = append(ids, l.Job.ID)
		}
		return ids
	}
	runJobs(e.h.Owner(), "failed", "succeeded")
	runJobs(e.h.Client(e.tokenB), "failed", "failed", "failed")
	page := func(org string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", e.h.URL+"/ui/insights", nil)
		req.AddCookie(e.sessionAs(org, auth.RoleViewer))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := read(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("insights of %s: %d %s", org, resp.StatusCode, body)
		}
		return body
	}
	a := page(e.orgA)
	for _, want := range []string{"From the 2 jobs", "<td>linux</td>", "(1/2)"} {
		if !strings.Contains(a, want) {
			t.Errorf("org a's page lacks %q", want)
		}
	}
	if strings.Contains(a, "(3/3)") {
		t.Error("org a's page counts org b's failures")
	}
	if b := page(e.orgB); !strings.Contains(b, "From the 3 jobs") || !strings.Contains(b, "(3/3)") {
		t.Errorf("org b's page: %s", b)
	}
}
