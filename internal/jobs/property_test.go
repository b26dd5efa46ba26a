package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/nimbus-build/nimbus/internal/github"
	"github.com/nimbus-build/nimbus/internal/github/githubtest"
	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// minter mints fake runner configs, so GitHub jobs can be leased.
type minter struct{}

func (minter) MintRunner(ctx context.Context, j store.Job, name string) (jobs.Runner, error) {
	return jobs.Runner{ID: j.Fence, JITConfig: "jit-" + name}, nil
}

func (minter) RemoveRunner(ctx context.Context, j store.Job, id int64) error { return nil }

type held struct {
	agent store.Agent
	job   string
	fence int64
}

// Random interleavings of many agents' leases, renewals, completions,
// cancellations, lease expiry and webhook replays. After every step:
// fences only grow, at most one lease of a job is live (only the newest
// fence is ever accepted), a job completes once, and no GitHub job exists
// twice.
func TestJobLoopProperties(t *testing.T) {
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			st := storetest.Open(t, engine)
			ctx := context.Background()
			runs := 0
			rapid.Check(t, func(rt *rapid.T) {
				runs++
				org := store.Org{ID: fmt.Sprintf("org_%d", runs), Name: fmt.Sprintf("org%d", runs), GitHubOwnerID: int64(1000 + runs),
					GitHubLogin: fmt.Sprintf("gh%d", runs), CreatedAt: time.Now()}
				if err := st.Orgs().Create(ctx, org); err != nil {
					rt.Fatal(err)
				}
				clock := &fakeClock{t: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}
				cfg := jobs.DefaultConfig()
				cfg.LeaseTTL, cfg.MaxAttempts, cfg.OrgJobRate = 10*time.Second, 3, 0
				svc, err := jobs.New(jobs.Options{Store: st, Config: cfg, Now: clock.Now, Runners: minter{}})
				if err != nil {
					rt.Fatal(err)
				}
				var agents []store.Agent
				for i := range 3 {
					a := store.Agent{ID: fmt.Sprintf("agt_%d_%d", runs, i), OrgID: org.ID, Name: "a",
						Labels: []string{"linux", "self-hosted", "x64"}, MaxJobs: 2, CreatedAt: clock.Now()}
					if err := st.Agents().Create(ctx, a); err != nil {
						rt.Fatal(err)
					}
					agents = append(agents, a)
				}
				var holds []held
				lastFence := map[string]int64{}
				completions := map[string]int{}
				keys := map[string]bool{}
				deliveries := 0

				for step := range rapid.IntRange(1, 60).Draw(rt, "steps") {
					switch rapid.IntRange(0, 7).Draw(rt, "op") {
					case 0: // a webhook, often a replay or redelivery
						jobID := rapid.Int64Range(1, 4).Draw(rt, "gh_job")
						action := rapid.SampledFrom([]string{"queued", "queued", "in_progress", "completed"}).Draw(rt, "action")
						delivery := fmt.Sprintf("%d-%d", runs, rapid.IntRange(0, deliveries).Draw(rt, "delivery"))
						deliveries++
						body := githubtest.WorkflowJobPayload(githubtest.WorkflowJobOptions{Action: action, JobID: jobID,
							OwnerID: org.GitHubOwnerID, Owner: org.GitHubLogin, InstallationID: 1, RunnerName: "r" + fmt.Sprint(step)})
						ev, err := github.ParseWorkflowJob(body)
						if err != nil {
							rt.Fatal(err)
						}
						res, err := svc.IngestWorkflowJob(ctx, github.Delivery{ID: delivery, Event: "workflow_job"}, ev)
						if err != nil {
							rt.Fatal(err)
						}
						if res.Outcome == jobs.WebhookCreated {
							if keys[ev.JobKey()] {
								rt.Fatalf("job %s created twice", ev.JobKey())
							}
							keys[ev.JobKey()] = true
						}
					case 1: // an API job
						if _, _, err := svc.Submit(ctx, jobs.Submission{OrgID: org.ID, CreatedBy: "t", Argv: []string{"true"}}); err != nil {
							rt.Fatal(err)
						}
					case 2, 3: // an agent leases
						a := agents[rapid.IntRange(0, len(agents)-1).Draw(rt, "agent")]
						l, err := svc.Lease(ctx, a, 0)
						if err != nil {
							rt.Fatal(err)
						}
						if l == nil {
							continue
						}
						if l.Job.Fence <= lastFence[l.Job.ID] {
							rt.Fatalf("job %s leased with fence %d after fence %d", l.Job.ID, l.Job.Fence, lastFence[l.Job.ID])
						}
						lastFence[l.Job.ID] = l.Job.Fence
						holds = append(holds, held{agent: a, job: l.Job.ID, fence: l.Job.Fence})
					case 4: // an agent renews one of its leases, maybe a stale one
						if len(holds) == 0 {
							continue
						}
						h := holds[rapid.IntRange(0, len(holds)-1).Draw(rt, "hold")]
						states, err := svc.Sync(ctx, h.agent, []jobs.LeaseRef{{JobID: h.job, Fence: h.fence}}, 0)
						if err != nil {
							rt.Fatal(err)
						}
						if states[0].Status != "lost" && h.fence != lastFence[h.job] {
							rt.Fatalf("stale lease of %s (fence %d, newest %d) renewed", h.job, h.fence, lastFence[h.job])
						}
					case 5: // an agent completes, maybe with a stale fence
						if len(holds) == 0 {
							continue
						}
						h := holds[rapid.IntRange(0, len(holds)-1).Draw(rt, "hold")]
						_, err := svc.Complete(ctx, h.agent, h.job, h.fence, store.Outcome{State: store.JobSucceeded})
						switch {
						case err == nil:
							if h.fence != lastFence[h.job] {
								rt.Fatalf("stale completion of %s (fence %d, newest %d) accepted", h.job, h.fence, lastFence[h.job])
							}
							completions[h.job]++
							if completions[h.job] > 1 {
								rt.Fatalf("job %s completed twice", h.job)
							}
						case errors.Is(err, store.ErrStaleFence), errors.Is(err, store.ErrFinished):
						default:
							rt.Fatal(err)
						}
					case 6: // someone cancels
						list, err := st.Jobs().List(ctx, store.JobFilter{OrgID: org.ID, Limit: 1000})
						if err != nil || len(list) == 0 {
							continue
						}
						j := list[rapid.IntRange(0, len(list)-1).Draw(rt, "cancel")]
						if _, err := svc.Cancel(ctx, org.ID, j.ID, "user:t"); err != nil {
							rt.Fatal(err)
						}
					case 7: // time passes; the reaper runs
						clock.Advance(time.Duration(rapid.IntRange(1, 15).Draw(rt, "seconds")) * time.Second)
						if _, err := svc.Reap(ctx); err != nil {
							rt.Fatal(err)
						}
					}
					checkStore(rt, st, org.ID, lastFence)
				}
			})
		})
	}
}

// checkStore checks the invariants on what is stored.
func checkStore(rt *rapid.T, st store.Store, org string, lastFence map[string]int64) {
	list, err := st.Jobs().List(context.Background(), store.JobFilter{OrgID: org, Limit: 1000})
	if err != nil {
		rt.Fatal(err)
	}
	keys := map[string]bool{}
	for _, j := range list {
		if j.Key != "" {
			if keys[j.Key] {
				rt.Fatalf("two jobs with key %s", j.Key)
			}
			keys[j.Key] = true
		}
		if j.Fence != lastFence[j.ID] {
			rt.Fatalf("job %s: stored fence %d, last issued %d", j.ID, j.Fence, lastFence[j.ID])
		}
		if j.State.Live() != (j.LeaseExpiresAt != time.Time{}) {
			rt.Fatalf("job %s: state %s with lease expiry %v", j.ID, j.State, j.LeaseExpiresAt)
		}
		if j.State.Terminal() && j.FinishedAt.IsZero() {
			rt.Fatalf("job %s: %s without a finish time", j.ID, j.State)
		}
		if j.Attempt > j.MaxAttempts {
			rt.Fatalf("job %s: attempt %d beyond %d", j.ID, j.Attempt, j.MaxAttempts)
		}
	}
}
