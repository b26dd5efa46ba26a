package jobs_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

// A job the reaper ends (its agent stopped renewing, no attempt left) is a
// run like any other: nimbus_job_run_seconds observes it under the state
// it ended in, from its start to the reaper's time. A requeued attempt is
// not an end and is not observed.
func TestReapedJobRunTimeObserved(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			st := storetest.Open(t, engine)
			ctx := context.Background()
			clock := &fakeClock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
			org := store.Org{ID: "org_1", Name: "o", CreatedAt: clock.Now()}
			if err := st.Orgs().Create(ctx, org); err != nil {
				t.Fatal(err)
			}
			agent := store.Agent{ID: "agt_1", OrgID: org.ID, Name: "a", Labels: []string{"linux"}, MaxJobs: 4, CreatedAt: clock.Now()}
			if err := st.Agents().Create(ctx, agent); err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			cfg := jobs.DefaultConfig()
			cfg.MaxAttempts, cfg.OrgJobRate = 2, 0
			svc, err := jobs.New(jobs.Options{Store: st, Config: cfg, Registry: reg, Now: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			j, _, err := svc.Submit(ctx, jobs.Submission{OrgID: org.ID, CreatedBy: "user:tok_1", Argv: []string{"true"}, Labels: []string{"linux"}})
			if err != nil {
				t.Fatal(err)
			}
			for attempt := 1; attempt <= 2; attempt++ {
				l, err := svc.Lease(ctx, agent, 0)
				if err != nil || l == nil || l.Job.ID != j.ID {
					t.Fatalf("attempt %d: lease %+v %v", attempt, l, err)
				}
				if _, err := svc.Start(ctx, agent, j.ID, l.Job.Fence); err != nil {
					t.Fatal(err)
				}
				clock.Advance(cfg.LeaseTTL + time.Second)
				exp, err := svc.Reap(ctx)
				if err != nil || len(exp) != 1 {
					t.Fatalf("attempt %d: reap %+v %v", attempt, exp, err)
				}
				if n, _ := runHistogram(t, reg, "failed"); n != uint64(attempt-1) {
					t.Fatalf("after attempt %d (requeued %v): %d failed runs observed, want %d", attempt, exp[0].Requeued, n, attempt-1)
				}
			}
			got, err := st.Jobs().Get(ctx, j.ID)
			if err != nil || got.State != store.JobFailed {
				t.Fatalf("job %+v %v, want failed", got, err)
			}
			_, sum := runHistogram(t, reg, "failed")
			if want := got.FinishedAt.Sub(got.StartedAt).Seconds(); sum != want || want <= 0 {
				t.Errorf("run seconds sum %v, want %v (start to the reaper's end)", sum, want)
			}
		})
	}
}

// runHistogram reads nimbus_job_run_seconds{labels="linux",state=state}
// from reg: its count and sum (zero when the series does not exist).
func runHistogram(t *testing.T, reg *prometheus.Registry, state string) (count uint64, sum float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "nimbus_job_run_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["labels"] == "linux" && l["state"] == state {
				return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			}
		}
	}
	return 0, 0
}
