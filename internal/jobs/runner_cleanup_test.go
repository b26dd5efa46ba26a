package jobs_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/github"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

// registry is a small working stand-in for GitHub's runner registry.
type registry struct {
	mu      sync.Mutex
	next    int64
	runners map[int64]string
}

func (r *registry) MintRunner(ctx context.Context, j store.Job, name string) (jobs.Runner, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	r.runners[r.next] = name
	return jobs.Runner{ID: r.next, JITConfig: "jit"}, nil
}

func (r *registry) RemoveRunner(ctx context.Context, j store.Job, id int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.runners, id)
	return nil
}

func (r *registry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.runners)
}

// A runner registered for a lease that ends — by expiry or by completion —
// is removed from GitHub; one registered for the current lease is not.
func TestRunnersRemovedWhenLeasesEnd(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	ctx := context.Background()
	org := store.Org{ID: "org_1", Name: "o", GitHubOwnerID: 6811672, GitHubLogin: "octo-org", CreatedAt: time.Now()}
	st.Orgs().Create(ctx, org)
	agent := store.Agent{ID: "agt_1", OrgID: org.ID, Name: "a", Labels: []string{"linux", "self-hosted", "x64"}, MaxJobs: 4, CreatedAt: time.Now()}
	st.Agents().Create(ctx, agent)
	reg := &registry{runners: map[int64]string{}}
	clock := &fakeClock{t: time.Now()}
	cfg := jobs.DefaultConfig()
	cfg.OrgJobRate = 0
	svc, err := jobs.New(jobs.Options{Store: st, Config: cfg, Runners: reg, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	defer func() { cancel(); <-done }()

	ev, _ := github.ParseWorkflowJob(githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{InstallationID: 9}))
	if _, err := svc.IngestWorkflowJob(ctx, github.Delivery{ID: "d1", Event: "workflow_job"}, ev); err != nil {
		t.Fatal(err)
	}
	l, err := svc.Lease(ctx, agent, 0)
	if err != nil || l == nil || l.Job.RunnerID == 0 {
		t.Fatalf("lease: %+v %v", l, err)
	}
	if reg.count() != 1 {
		t.Fatalf("%d runners registered", reg.count())
	}
	// The agent dies: the lease expires, the runner is removed, and the
	// next lease registers a new one.
	clock.Advance(cfg.LeaseTTL + time.Second)
	if _, err := svc.Reap(ctx); err != nil {
		t.Fatal(err)
	}
	waitCount(t, reg, 0)
	l2, err := svc.Lease(ctx, agent, 0)
	if err != nil || l2 == nil || l2.Job.RunnerID == l.Job.RunnerID {
		t.Fatalf("second lease: %+v %v", l2, err)
	}
	waitCount(t, reg, 1)
	// Completion removes it too.
	if _, err := svc.Complete(ctx, agent, l2.Job.ID, l2.Job.Fence, store.Outcome{State: store.JobSucceeded}); err != nil {
		t.Fatal(err)
	}
	waitCount(t, reg, 0)
}

func waitCount(t *testing.T, r *registry, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.count() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d runners registered, want %d", r.count(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
