package ctl_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/app/apptest"
)

// `nimbus ctl insights` prints the report as tables, or as the API's
// JSON with --json; bad flags are usage errors.
func TestInsightsCommand(t *testing.T) {
	h := apptest.Start(t, "sqlite")
	ctx := context.Background()
	owner := h.Owner()
	en, err := h.Client(h.JoinToken("linux")).Enroll(ctx, apiv1.Enroll{Name: "insights-agent", MaxJobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	agent := h.Client(en.Credential)
	for _, state := range []string{"failed", "succeeded"} {
		if _, err := owner.SubmitJob(ctx, apiv1.SubmitJob{Argv: []string{"true"}, Labels: []string{"linux"}}); err != nil {
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
	}
	r := run(h, nil, "insights", "--since", "1d", "--by-day")
	for _, want := range []string{"2 of the org's jobs", "REPOSITORY", "linux", "50% (1/2)", "DAY (UTC)", "No flaky jobs."} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("insights: %q not in %+v", want, r)
		}
	}
	r = run(h, nil, "insights", "--json")
	var got apiv1.Insights
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &got) != nil || got.Jobs != 2 || len(got.Groups) != 1 || got.Groups[0].FailureRate != 0.5 {
		t.Errorf("insights --json: %+v", r)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"insights", "--lines", "99"}, 2, "--lines: 0-50"},
		{[]string{"insights", "extra"}, 2, "no arguments"},
		{[]string{"insights", "--since", "yesterday"}, 1, "since"},
		{[]string{"insights", "--since", "100d"}, 1, "92 days"},
	} {
		r := run(h, nil, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
}
