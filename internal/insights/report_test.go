package insights_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/github"
	"github.com/nimbus-build/nimbus/internal/insights"
	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/sqlstore"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

// clock is the fixture's time, moved by the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is two orgs linked to GitHub accounts on a real store, the
// jobs and logs services over it, and an agent in each org.
type fixture struct {
	db       *sqlstore.DB
	clock    *clock
	jobs     *jobs.Service
	logs     *logs.Service
	insights *insights.Service
	agents   map[string]store.Agent // by org
	delivery int
}

var poolLabels = []string{"self-hosted", "linux", "x64", "nimbus"}

func newFixture(t *testing.T, engine string) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{db: storetest.Open(t, engine), clock: &clock{t: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)}, agents: map[string]store.Agent{}}
	cfg := jobs.DefaultConfig()
	cfg.OrgJobRate = 0
	var err error
	if f.jobs, err = jobs.New(jobs.Options{Store: f.db, Config: cfg, Now: f.clock.now}); err != nil {
		t.Fatal(err)
	}
	if f.logs, err = logs.New(logs.Options{Store: f.db.Logs(), Jobs: f.jobs, Now: f.clock.now}); err != nil {
		t.Fatal(err)
	}
	f.insights = insights.New(f.jobs, f.logs, f.clock.now, nil)
	for i, org := range []string{"org_a", "org_b"} {
		if err := f.db.Orgs().Create(ctx, store.Org{ID: org, Name: org, CreatedAt: f.clock.now()}); err != nil {
			t.Fatal(err)
		}
		if err := f.db.Orgs().LinkGitHub(ctx, org, int64(100+i), "owner-"+org); err != nil {
			t.Fatal(err)
		}
		a := store.Agent{ID: "agt_" + org, OrgID: org, Name: "a", Labels: poolLabels, MaxJobs: 10, CreatedAt: f.clock.now()}
		if err := f.db.Agents().Create(ctx, a); err != nil {
			t.Fatal(err)
		}
		f.agents[org] = a
	}
	return f
}

// run is one GitHub job of the org's account: queued by a webhook,
// leased after queue, started, writing output, ended after run.
type run struct {
	org, repo, workflow, name, sha string
	ghJob, attempt                 int64
	queue, run                     time.Duration
	setup                          time.Duration // lease → start: the agent's, not the queue's
	end                            store.JobState
	output                         string
}

func (f *fixture) run(t *testing.T, r run) string {
	t.Helper()
	ctx := context.Background()
	owner := map[string]int64{"org_a": 100, "org_b": 101}[r.org]
	f.delivery++
	ev := github.WorkflowJobEvent{
		Action: github.ActionQueued,
		Job: github.WorkflowJob{ID: r.ghJob, RunID: r.ghJob * 10, RunAttempt: r.attempt, Name: r.name, Labels: poolLabels,
			Status: "queued", HeadSHA: r.sha, HeadBranch: "main", WorkflowName: r.workflow},
		Repository:     github.Repository{ID: owner * 1000, Name: r.repo[strings.IndexByte(r.repo, '/')+1:], FullName: r.repo, Owner: github.Account{ID: owner, Login: "owner-" + r.org, Type: github.AccountOrganization}},
		InstallationID: 7,
	}
	res, err := f.jobs.IngestWorkflowJob(ctx, github.Delivery{ID: fmt.Sprintf("delivery-%d", f.delivery), Event: "workflow_job"}, ev)
	if err != nil || res.Outcome != jobs.WebhookCreated {
		t.Fatalf("webhook: %+v %v", res, err)
	}
	f.clock.add(r.queue)
	// The store's lease: the jobs service would mint a GitHub runner.
	a := f.agents[r.org]
	j, err := f.db.Jobs().Lease(ctx, store.LeaseRequest{OrgID: r.org, AgentID: a.ID, Labels: a.Labels, MaxJobs: 10, TTL: time.Hour, Now: f.clock.now()})
	if err != nil || j.ID != res.JobID {
		t.Fatalf("lease %s: %s %v", res.JobID, j.ID, err)
	}
	f.clock.add(r.setup)
	if _, err := f.jobs.Start(ctx, a, j.ID, j.Fence); err != nil {
		t.Fatal(err)
	}
	if r.output != "" {
		if _, err := f.logs.Append(ctx, a, j.ID, j.Fence, []logs.Chunk{{Seq: 0, Data: []byte(r.output)}}, true); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.add(r.run)
	if _, err := f.jobs.Complete(ctx, a, j.ID, j.Fence, store.Outcome{State: r.end}); err != nil {
		t.Fatal(err)
	}
	return j.ID
}

func TestReport(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) { testReport(t, engine) })
	}
}

func testReport(t *testing.T, engine string) {
	f := newFixture(t, engine)
	ctx := context.Background()
	const sha1, sha2 = "1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222"
	day1 := f.clock.now().Truncate(24 * time.Hour)
	failed := f.run(t, run{org: "org_a", repo: "acme/web", workflow: "CI", name: "test", sha: sha1, ghJob: 1, attempt: 1,
		queue: 10 * time.Second, run: 60 * time.Second, end: store.JobFailed,
		output: "::group::go test\nok  \tacme/web/a\n--- FAIL: TestRace (0.01s)\n\x1b[31merror: timeout waiting for db\x1b[0m\n::endgroup::\nexit status 1\n"})
	// The re-run of the same job on the same commit passes: flaky.
	passed := f.run(t, run{org: "org_a", repo: "acme/web", workflow: "CI", name: "test", sha: sha1, ghJob: 1, attempt: 2,
		queue: 20 * time.Second, run: 30 * time.Second, end: store.JobSucceeded, output: "ok\n"})
	build := f.run(t, run{org: "org_a", repo: "acme/web", workflow: "CI", name: "build", sha: sha1, ghJob: 2, attempt: 1,
		queue: 30 * time.Second, setup: 5 * time.Second, run: 90 * time.Second, end: store.JobSucceeded})
	// Another org's jobs in a repository of the same name, flaky too.
	var others []string
	for i, end := range []store.JobState{store.JobFailed, store.JobSucceeded} {
		others = append(others, f.run(t, run{org: "org_b", repo: "acme/web", workflow: "CI", name: "test", sha: sha1, ghJob: 9, attempt: int64(i + 1),
			queue: time.Second, run: time.Second, end: end, output: "org b's secret error line\n"}))
	}
	f.clock.add(24 * time.Hour)
	day2 := f.clock.now().Truncate(24 * time.Hour)
	// A failure on another commit and repository: not flaky.
	api := f.run(t, run{org: "org_a", repo: "acme/api", workflow: "CI", name: "test", sha: sha2, ghJob: 3, attempt: 1,
		queue: 40 * time.Second, run: 10 * time.Second, end: store.JobFailed, output: "error: boom\n"})

	r, err := f.insights.Report(ctx, "org_a", insights.Params{FailingLines: 5})
	if err != nil {
		t.Fatal(err)
	}
	const labels = "linux,nimbus,self-hosted,x64"
	wantGroups := []insights.Group{
		{Repo: "acme/web", Workflow: "CI", Name: "test", Labels: labels, Stats: insights.Stats{Jobs: 2, Succeeded: 1, Failed: 1, FailureRate: 0.5,
			QueueP50: 20 * time.Second, QueueP90: 20 * time.Second, RunP50: 60 * time.Second, RunP90: 60 * time.Second,
			Days: []insights.Day{{Day: day1, Jobs: 2, Succeeded: 1, Failed: 1}}}},
		{Repo: "acme/api", Workflow: "CI", Name: "test", Labels: labels, Stats: insights.Stats{Jobs: 1, Failed: 1, FailureRate: 1,
			QueueP50: 40 * time.Second, QueueP90: 40 * time.Second, RunP50: 10 * time.Second, RunP90: 10 * time.Second,
			Days: []insights.Day{{Day: day2, Jobs: 1, Failed: 1}}}},
		{Repo: "acme/web", Workflow: "CI", Name: "build", Labels: labels, Stats: insights.Stats{Jobs: 1, Succeeded: 1,
			QueueP50: 30 * time.Second, QueueP90: 30 * time.Second, RunP50: 90 * time.Second, RunP90: 90 * time.Second,
			Days: []insights.Day{{Day: day1, Jobs: 1, Succeeded: 1}}}},
	}
	if diff := cmp.Diff(wantGroups, r.Groups, cmp.AllowUnexported(insights.Stats{})); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	if len(r.Labels) != 1 || r.Labels[0].Jobs != 4 || r.Labels[0].Failed != 2 || len(r.Labels[0].Days) != 2 ||
		r.Labels[0].Days[0].Jobs != 3 || r.Labels[0].Days[1].Jobs != 1 {
		t.Errorf("labels: %+v", r.Labels)
	}
	if r.Jobs != 4 || r.Capped {
		t.Errorf("jobs %d capped %v, want 4 false", r.Jobs, r.Capped)
	}
	if len(r.Flaky) != 1 {
		t.Fatalf("flaky: %+v", r.Flaky)
	}
	fl := r.Flaky[0]
	var texts []string
	for _, l := range fl.Lines {
		texts = append(texts, l.Text)
		if l.Job != failed {
			t.Errorf("a failing line of job %s, want %s", l.Job, failed)
		}
	}
	fl.Lines = nil
	if diff := cmp.Diff(insights.Flaky{Repo: "acme/web", Workflow: "CI", Name: "test", HeadSHA: sha1, Failed: 1, Succeeded: 1,
		FailedJob: failed, PassedJob: passed}, fl); diff != "" {
		t.Errorf("flaky (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"--- FAIL: TestRace (0.01s)", "\x1b[31merror: timeout waiting for db\x1b[0m"}, texts); diff != "" {
		t.Errorf("failing lines (-want +got):\n%s", diff)
	}

	// Nothing of org b's in org a's report, and org b's is its own.
	for _, id := range others {
		for _, g := range r.Flaky {
			if g.FailedJob == id || g.PassedJob == id {
				t.Errorf("org b's job %s in org a's report", id)
			}
		}
	}
	rb, err := f.insights.Report(ctx, "org_b", insights.Params{FailingLines: 5})
	if err != nil {
		t.Fatal(err)
	}
	if rb.Jobs != 2 || len(rb.Flaky) != 1 || rb.Flaky[0].FailedJob != others[0] || rb.Flaky[0].PassedJob != others[1] {
		t.Errorf("org b's report: %+v", rb)
	}
	for _, id := range []string{failed, passed, build, api} {
		if rb.Flaky[0].FailedJob == id {
			t.Errorf("org a's job %s in org b's report", id)
		}
	}

	// Narrowed to a repository (any case, as GitHub's names are).
	ra, err := f.insights.Report(ctx, "org_a", insights.Params{Repo: "ACME/api"})
	if err != nil {
		t.Fatal(err)
	}
	if ra.Jobs != 1 || len(ra.Groups) != 1 || ra.Groups[0].Repo != "acme/api" || len(ra.Flaky) != 0 {
		t.Errorf("acme/api: %+v", ra)
	}
	// Bounded: the newest jobs only, said so.
	rc, err := f.insights.Report(ctx, "org_a", insights.Params{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rc.Jobs != 2 || !rc.Capped || len(rc.Flaky) != 0 {
		t.Errorf("capped at 2: jobs %d capped %v flaky %d", rc.Jobs, rc.Capped, len(rc.Flaky))
	}
	// A time range: jobs created in it only.
	rd, err := f.insights.Report(ctx, "org_a", insights.Params{Since: day2})
	if err != nil {
		t.Fatal(err)
	}
	if rd.Jobs != 1 || rd.Groups[0].Repo != "acme/api" {
		t.Errorf("since day 2: %+v", rd)
	}
	rd, err = f.insights.Report(ctx, "org_a", insights.Params{Since: day1, Until: day2})
	if err != nil {
		t.Fatal(err)
	}
	if rd.Jobs != 3 || len(rd.Flaky) != 1 {
		t.Errorf("day 1: %+v", rd)
	}
}

// Requests out of bounds are refused before anything is read.
func TestReportBounds(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	s := insights.New(refuse{t}, nil, func() time.Time { return now }, nil)
	for _, tc := range []struct {
		name string
		org  string
		p    insights.Params
		want error
	}{
		{"no org", "", insights.Params{}, insights.ErrNoScope},
		{"range too long", "org_a", insights.Params{Since: now.Add(-93 * 24 * time.Hour)}, insights.ErrInvalid},
		{"since after until", "org_a", insights.Params{Since: now.Add(time.Hour)}, insights.ErrInvalid},
		{"too many jobs", "org_a", insights.Params{Jobs: insights.MaxJobs + 1}, insights.ErrInvalid},
		{"negative jobs", "org_a", insights.Params{Jobs: -1}, insights.ErrInvalid},
		{"too many lines", "org_a", insights.Params{FailingLines: insights.MaxFailingLines + 1}, insights.ErrInvalid},
		{"long repo", "org_a", insights.Params{Repo: strings.Repeat("a", 201)}, insights.ErrInvalid},
		{"repo not UTF-8", "org_a", insights.Params{Repo: "acme/\xff"}, insights.ErrInvalid},
	} {
		if _, err := s.Report(context.Background(), tc.org, tc.p); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// refuse is a job list that must not be read.
type refuse struct{ t *testing.T }

func (r refuse) List(context.Context, store.JobFilter) ([]store.Job, error) {
	r.t.Error("jobs listed for a request out of bounds")
	return nil, nil
}
