package jobs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

// The job service records each transition with its audit entry, and a
// completion refused for a stale fence (an agent that lost its lease
// reporting anyway) is recorded too, whoever calls the service.
func TestTransitionsAndRefusalsAreAudited(t *testing.T) {
	storetest.ForEachEngine(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		st.Orgs().Create(ctx, store.Org{ID: "org_1", Name: "o", CreatedAt: time.Now()})
		agent := store.Agent{ID: "agt_1", OrgID: "org_1", Name: "a", Labels: []string{"linux"}, MaxJobs: 4}
		cfg := jobs.DefaultConfig()
		cfg.OrgJobRate = 0
		svc, err := jobs.New(jobs.Options{Store: st, Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		j, _, err := svc.Submit(ctx, jobs.Submission{OrgID: "org_1", CreatedBy: "user:tok_1", Argv: []string{"true"}, Labels: []string{"linux"}})
		if err != nil {
			t.Fatal(err)
		}
		l, err := svc.Lease(ctx, agent, 0)
		if err != nil || l == nil {
			t.Fatalf("lease: %v", err)
		}
		if _, err := svc.Complete(ctx, agent, j.ID, l.Job.Fence+1, store.Outcome{State: store.JobSucceeded}); !errors.Is(err, store.ErrStaleFence) {
			t.Fatalf("stale completion: %v", err)
		}
		if _, err := svc.Complete(ctx, agent, j.ID, l.Job.Fence, store.Outcome{State: store.JobSucceeded}); err != nil {
			t.Fatal(err)
		}
		list, err := st.Audit().List(ctx, store.AuditFilter{OrgID: "org_1", Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i := len(list) - 1; i >= 0; i-- {
			got = append(got, list[i].Action+" by "+list[i].Actor)
		}
		want := []string{"job.created by user:tok_1", "job.leased by agent:agt_1", "job.stale_report_refused by agent:agt_1", "job.finished by agent:agt_1"}
		if len(got) != len(want) {
			t.Fatalf("audit log %q, want %q", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("entry %d: %q, want %q", i, got[i], want[i])
			}
		}
	})
}
