package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/store"
)

// Run is the conformance suite. open returns a new, empty store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := map[string]func(t *testing.T, s store.Store){
		"Orgs":                testOrgs,
		"APITokens":           testAPITokens,
		"JoinTokens":          testJoinTokens,
		"Agents":              testAgents,
		"JobCreateIdempotent": testJobCreateIdempotent,
		"LeaseMatching":       testLeaseMatching,
		"LeaseLifecycle":      testLeaseLifecycle,
		"LeaseExpiry":         testLeaseExpiry,
		"Cancel":              testCancel,
		"Release":             testRelease,
		"ConcurrentLeases":    testConcurrentLeases,
		"Audit":               testAudit,
		"KeysAndSecrets":      testKeysAndSecrets,
		"Deliveries":          testDeliveries,
		"TxRollback":          testTxRollback,
		"Sessions":            testSessions,
		"CacheTrust":          testCacheTrust,
	}
	for name, fn := range tests {
		t.Run(name, func(t *testing.T) { fn(t, open(t)) })
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

var seq int

// newID returns ids that sort in creation order, like the real ones.
func newID(prefix string) string {
	seq++
	return fmt.Sprintf("%s_%08d", prefix, seq)
}

func mustOrg(t *testing.T, s store.Store, name string) store.Org {
	t.Helper()
	o := store.Org{ID: newID("org"), Name: name, CreatedAt: t0}
	if err := s.Orgs().Create(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return o
}

func newJob(org string, labels ...string) store.Job {
	return store.Job{
		ID: newID("job"), OrgID: org, Source: store.SourceAPI, State: store.JobQueued, Labels: labels,
		Spec:        store.JobSpec{Argv: []string{"true"}, Env: map[string]string{"A": "b"}, Timeout: time.Minute},
		MaxAttempts: 3, CreatedBy: "test", CreatedAt: t0, NotBefore: t0, UpdatedAt: t0,
	}
}

func mustCreate(t *testing.T, s store.Store, j store.Job) store.Job {
	t.Helper()
	got, created, err := s.Jobs().Create(context.Background(), j)
	if err != nil || !created {
		t.Fatalf("create job: created=%v err=%v", created, err)
	}
	return got
}

func lease(s store.Store, org, agent string, labels ...string) (store.Job, error) {
	return s.Jobs().Lease(context.Background(), store.LeaseRequest{
		OrgID: org, AgentID: agent, Labels: labels, MaxJobs: 10, TTL: 30 * time.Second, Now: t0,
	})
}

func testOrgs(t *testing.T, s store.Store) {
	ctx := context.Background()
	o := store.Org{ID: "org_1", Name: "acme", GitHubOwnerID: 42, GitHubLogin: "acme-gh", CreatedAt: t0}
	if err := s.Orgs().Create(ctx, o); err != nil {
		t.Fatal(err)
	}
	if err := s.Orgs().Create(ctx, store.Org{ID: "org_2", Name: "acme", CreatedAt: t0}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate name: got %v, want ErrConflict", err)
	}
	if err := s.Orgs().Create(ctx, store.Org{ID: "org_3", Name: "other", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	for _, get := range []func() (store.Org, error){
		func() (store.Org, error) { return s.Orgs().Get(ctx, "org_1") },
		func() (store.Org, error) { return s.Orgs().GetByName(ctx, "acme") },
		func() (store.Org, error) { return s.Orgs().GetByGitHubOwner(ctx, 42) },
	} {
		got, err := get()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(o, got); diff != "" {
			t.Errorf("org (-want +got):\n%s", diff)
		}
	}
	if _, err := s.Orgs().GetByGitHubOwner(ctx, 43); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown owner: got %v, want ErrNotFound", err)
	}
	all, err := s.Orgs().List(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("list: %v %v", all, err)
	}
	if err := s.Orgs().LinkGitHub(ctx, "org_3", 42, "acme-gh"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("linking a GitHub account another org has: %v, want ErrConflict", err)
	}
	if err := s.Orgs().LinkGitHub(ctx, "org_3", 77, "other-gh"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Orgs().GetByGitHubOwner(ctx, 77); err != nil || got.ID != "org_3" {
		t.Errorf("after link: %+v %v", got, err)
	}
	if err := s.Orgs().LinkGitHub(ctx, "org_404", 78, "x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("link unknown org: %v", err)
	}
	err = s.InTx(ctx, func(r store.Repos) error { return r.Orgs().Lock(ctx, "org_1") })
	if err != nil {
		t.Errorf("lock org: %v", err)
	}
	err = s.InTx(ctx, func(r store.Repos) error { return r.Orgs().Lock(ctx, "org_404") })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("lock unknown org: %v, want ErrNotFound", err)
	}
}

func testAPITokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, b := mustOrg(t, s, "a"), mustOrg(t, s, "b")
	tok := store.APIToken{ID: "tok_1", OrgID: a.ID, Name: "ci", Role: "admin", Hash: []byte("hash-1"), CreatedBy: "x", CreatedAt: t0}
	if err := s.Tokens().CreateAPIToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	dup := tok
	dup.ID = "tok_2"
	if err := s.Tokens().CreateAPIToken(ctx, dup); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate hash: %v", err)
	}
	got, err := s.Tokens().APITokenByHash(ctx, []byte("hash-1"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tok, got); diff != "" {
		t.Errorf("token (-want +got):\n%s", diff)
	}
	if _, err := s.Tokens().APITokenByHash(ctx, []byte("nope")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown hash: %v", err)
	}
	if got, err := s.Tokens().GetAPIToken(ctx, tok.ID); err != nil || got.ID != tok.ID || got.Role != tok.Role || got.OrgID != a.ID {
		t.Errorf("token by id: %+v %v", got, err)
	}
	if _, err := s.Tokens().GetAPIToken(ctx, "tok_404"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
	// Another org cannot revoke it.
	if err := s.Tokens().RevokeAPIToken(ctx, b.ID, tok.ID, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("cross-org revoke: %v, want ErrNotFound", err)
	}
	if err := s.Tokens().RevokeAPIToken(ctx, a.ID, tok.ID, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Tokens().APITokenByHash(ctx, []byte("hash-1"))
	if !got.RevokedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("revoked at %v", got.RevokedAt)
	}
	list, err := s.Tokens().ListAPITokens(ctx, b.ID)
	if err != nil || len(list) != 0 {
		t.Errorf("org b tokens: %v %v", list, err)
	}
}

func testJoinTokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	o := mustOrg(t, s, "a")
	jt := store.JoinToken{ID: "jt_1", OrgID: o.ID, Hash: []byte("j1"), Labels: []string{"linux", "x64"}, MaxJobs: 2,
		CreatedBy: "x", Role: "owner", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.Tokens().CreateJoinToken(ctx, jt); err != nil {
		t.Fatal(err)
	}
	expired := jt
	expired.ID, expired.Hash, expired.ExpiresAt = "jt_2", []byte("j2"), t0.Add(-time.Second)
	if err := s.Tokens().CreateJoinToken(ctx, expired); err != nil {
		t.Fatal(err)
	}
	// Many agents race for one token: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.Tokens().ConsumeJoinToken(ctx, []byte("j1"), fmt.Sprintf("agent-%d", i), t0)
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
				if diff := cmp.Diff([]string{"linux", "x64"}, got.Labels); diff != "" || got.Role != "owner" {
					t.Errorf("role %q, labels (-want +got):\n%s", got.Role, diff)
				}
			} else if !errors.Is(err, store.ErrTokenUsed) {
				t.Errorf("consume: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Errorf("join token consumed %d times, want 1", wins)
	}
	if _, err := s.Tokens().ConsumeJoinToken(ctx, []byte("j2"), "late", t0); !errors.Is(err, store.ErrTokenUsed) {
		t.Errorf("expired token: %v, want ErrTokenUsed", err)
	}
	if _, err := s.Tokens().ConsumeJoinToken(ctx, []byte("unknown"), "x", t0); !errors.Is(err, store.ErrTokenUsed) {
		t.Errorf("unknown token: %v, want ErrTokenUsed", err)
	}
}

func testAgents(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, b := mustOrg(t, s, "a"), mustOrg(t, s, "b")
	ag := store.Agent{ID: "agt_1", OrgID: a.ID, Name: "host1", AllowedLabels: []string{"linux", "gpu"}, Labels: []string{"linux"},
		Role: "owner", MaxJobs: 1, CreatedAt: t0, LastSeenAt: t0}
	if err := s.Agents().Create(ctx, ag); err != nil {
		t.Fatal(err)
	}
	if err := s.Agents().Register(ctx, ag.ID, []string{"linux", "gpu"}, 4, "h", "v1", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, err := s.Agents().Get(ctx, ag.ID)
	if err != nil {
		t.Fatal(err)
	}
	ag.Labels, ag.MaxJobs, ag.Hostname, ag.Version, ag.LastSeenAt = []string{"linux", "gpu"}, 4, "h", "v1", t0.Add(time.Minute)
	if diff := cmp.Diff(ag, got); diff != "" {
		t.Errorf("agent (-want +got):\n%s", diff)
	}
	if err := s.Agents().Disable(ctx, b.ID, ag.ID, t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("cross-org disable: %v", err)
	}
	if err := s.Agents().Disable(ctx, a.ID, ag.ID, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Agents().Disable(ctx, a.ID, ag.ID, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Agents().Get(ctx, ag.ID)
	if !got.DisabledAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("disabled at %v, want the first time", got.DisabledAt)
	}
	if list, _ := s.Agents().List(ctx, b.ID); len(list) != 0 {
		t.Errorf("org b sees agents %v", list)
	}
}

func testJobCreateIdempotent(t *testing.T, s store.Store) {
	ctx := context.Background()
	o := mustOrg(t, s, "a")
	j := newJob(o.ID, "linux")
	j.Key = "gh:1:2:1"
	j.GitHub = &store.GitHubJob{RepoID: 1, JobID: 2, RunAttempt: 1, Status: "queued", Repo: "a/b"}
	first, created, err := s.Jobs().Create(ctx, j)
	if err != nil || !created {
		t.Fatalf("first create: %v %v", created, err)
	}
	again := newJob(o.ID, "other")
	again.Key = j.Key
	second, created, err := s.Jobs().Create(ctx, again)
	if err != nil || created {
		t.Fatalf("second create: created=%v err=%v", created, err)
	}
	if second.ID != first.ID {
		t.Errorf("second create returned %s, want the first job %s", second.ID, first.ID)
	}
	got, err := s.Jobs().GetByKey(ctx, j.Key)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(j, got); diff != "" {
		t.Errorf("job (-want +got):\n%s", diff)
	}
	list, err := s.Jobs().List(ctx, store.JobFilter{OrgID: o.ID})
	if err != nil || len(list) != 1 {
		t.Errorf("list: %d jobs, %v", len(list), err)
	}
}

func testLeaseMatching(t *testing.T, s store.Store) {
	a, b := mustOrg(t, s, "a"), mustOrg(t, s, "b")
	gpu := mustCreate(t, s, newJob(a.ID, "linux", "gpu"))
	plain := mustCreate(t, s, newJob(a.ID, "linux"))
	any := mustCreate(t, s, newJob(a.ID))
	later := newJob(a.ID)
	later.NotBefore = t0.Add(time.Minute)
	mustCreate(t, s, later)
	mustCreate(t, s, newJob(b.ID, "linux"))

	// An agent with only "linux" never gets the gpu job, nor org b's job,
	// nor the deferred one.
	var got []string
	for {
		j, err := lease(s, a.ID, "agt_linux", "linux")
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, j.ID)
	}
	if diff := cmp.Diff([]string{plain.ID, any.ID}, got); diff != "" {
		t.Errorf("leased (-want +got):\n%s", diff)
	}
	j, err := lease(s, a.ID, "agt_gpu", "gpu", "linux", "x64")
	if err != nil || j.ID != gpu.ID {
		t.Errorf("gpu agent leased %q, %v; want %s", j.ID, err, gpu.ID)
	}
}

func testLeaseLifecycle(t *testing.T, s store.Store) {
	ctx := context.Background()
	o := mustOrg(t, s, "a")
	job := mustCreate(t, s, newJob(o.ID))
	l, err := lease(s, o.ID, "agt_1")
	if err != nil {
		t.Fatal(err)
	}
	if l.State != store.JobLeased || l.Fence != 1 || l.AgentID != "agt_1" || !l.LeaseExpiresAt.Equal(t0.Add(30*time.Second)) || !l.LeasedAt.Equal(t0) {
		t.Fatalf("lease: %+v", l)
	}
	if _, err := lease(s, o.ID, "agt_2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second lease of the only job: %v", err)
	}
	jobs := s.Jobs()
	if _, err := jobs.Renew(ctx, job.ID, "agt_1", 0, time.Minute, t0); !errors.Is(err, store.ErrStaleFence) {
		t.Errorf("renew with a wrong fence: %v", err)
	}
	if _, err := jobs.Renew(ctx, job.ID, "agt_2", 1, time.Minute, t0); !errors.Is(err, store.ErrStaleFence) {
		t.Errorf("renew by another agent: %v", err)
	}
	r, err := jobs.Renew(ctx, job.ID, "agt_1", 1, time.Minute, t0.Add(10*time.Second))
	if err != nil || !r.LeaseExpiresAt.Equal(t0.Add(70*time.Second)) {
		t.Fatalf("renew: %v %v", r.LeaseExpiresAt, err)
	}
	st, err := jobs.Start(ctx, job.ID, "agt_1", 1, t0.Add(time.Second))
	if err != nil || st.State != store.JobRunning || !st.StartedAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("start: %+v %v", st, err)
	}
	if _, err := jobs.CheckLease(ctx, job.ID, "agt_1", 1); err != nil {
		t.Errorf("check lease: %v", err)
	}
	if err := jobs.SetRunner(ctx, job.ID, 1, "nimbus-x-1", 77); err != nil {
		t.Fatal(err)
	}
	if err := jobs.SetRunner(ctx, job.ID, 0, "stale", 78); !errors.Is(err, store.ErrStaleFence) {
		t.Errorf("set runner with a stale fence: %v", err)
	}
	if found, err := jobs.FindByRunner(ctx, "nimbus-x-1"); err != nil || found.ID != job.ID || found.RunnerID != 77 {
		t.Errorf("find by runner: %+v %v", found, err)
	}
	code := 3
	fin, err := jobs.Finish(ctx, job.ID, "agt_1", 1, store.Outcome{State: store.JobFailed, ExitCode: &code, Reason: "exit 3"}, t0.Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if fin.State != store.JobFailed || fin.ExitCode == nil || *fin.ExitCode != 3 || !fin.FinishedAt.Equal(t0.Add(5*time.Second)) {
		t.Errorf("finish: %+v", fin)
	}
	// Exactly once: a second completion is refused, whatever it says.
	if _, err := jobs.Finish(ctx, job.ID, "agt_1", 1, store.Outcome{State: store.JobSucceeded}, t0); !errors.Is(err, store.ErrFinished) {
		t.Errorf("second finish: %v, want ErrFinished", err)
	}
	if _, err := jobs.Renew(ctx, job.ID, "agt_1", 1, time.Minute, t0); !errors.Is(err, store.ErrFinished) {
		t.Errorf("renew after finish: %v, want ErrFinished", err)
	}
	if _, err := jobs.Finish(ctx, job.ID, "agt_1", 1, store.Outcome{State: store.JobQueued}, t0); err == nil {
		t.Errorf("finish with a non-final state succeeded")
	}
}

func testLeaseExpiry(t *testing.T, s store.Store) {
	ctx := context.Background()
	o := mustOrg(t, s, "a")
	job := mustCreate(t, s, newJob(o.ID)) // MaxAttempts 3
	for attempt := 1; attempt <= 3; attempt++ {
		// Each attempt leased later: the first lease's time stays.
		l, err := s.Jobs().Lease(ctx, store.LeaseRequest{OrgID: o.ID, AgentID: fmt.Sprintf("agt_%d", attempt), MaxJobs: 10,
			TTL: 30*time.Second - time.Duration(attempt)*time.Second, Now: t0.Add(time.Duration(attempt) * time.Second)})
		if err != nil {
			t.Fatalf("attempt %d: lease: %v", attempt, err)
		}
		if l.Fence != int64(attempt) || !l.LeasedAt.Equal(t0.Add(time.Second)) {
			t.Errorf("attempt %d: fence %d, first leased at %v", attempt, l.Fence, l.LeasedAt)
		}
		// Not yet expired.
		if exp, err := s.Jobs().ExpireLeases(ctx, t0.Add(29*time.Second)); err != nil || len(exp) != 0 {
			t.Fatalf("early expiry: %v %v", exp, err)
		}
		exp, err := s.Jobs().ExpireLeases(ctx, t0.Add(31*time.Second))
		if err != nil || len(exp) != 1 {
			t.Fatalf("expiry: %v %v", exp, err)
		}
		e := exp[0]
		if e.Job.ID != job.ID || e.Job.Attempt != attempt {
			t.Errorf("expired %+v", e.Job)
		}
		if attempt < 3 && (!e.Requeued || e.Job.State != store.JobQueued) {
			t.Errorf("attempt %d: not requeued: %+v", attempt, e)
		}
		if attempt == 3 && (e.Requeued || e.Job.State != store.JobFailed || e.Job.Reason == "") {
			t.Errorf("last attempt: %+v", e)
		}
		// The expired agent's reports are refused.
		if _, err := s.Jobs().Finish(ctx, job.ID, fmt.Sprintf("agt_%d", attempt), int64(attempt), store.Outcome{State: store.JobSucceeded}, t0); err == nil {
			t.Errorf("attempt %d: stale finish accepted", attempt)
		}
	}
}

func testCancel(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, b := mustOrg(t, s, "a"), mustOrg(t, s, "b")
	queued := mustCreate(t, s, newJob(a.ID))
	if _, err := s.Jobs().RequestCancel(ctx, b.ID, queued.ID, "x", t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("cross-org cancel: %v", err)
	}
	c, err := s.Jobs().RequestCancel(ctx, a.ID, queued.ID, "by user", t0)
	if err != nil || c.State != store.JobCancelled {
		t.Fatalf("cancel queued: %+v %v", c, err)
	}
	running := mustCreate(t, s, newJob(a.ID))
	if _, err := lease(s, a.ID, "agt"); err != nil {
		t.Fatal(err)
	}
	c, err = s.Jobs().RequestCancel(ctx, a.ID, running.ID, "by user", t0)
	if err != nil || c.State != store.JobLeased || !c.CancelRequested {
		t.Fatalf("cancel leased: %+v %v", c, err)
	}
	r, err := s.Jobs().Renew(ctx, running.ID, "agt", 1, time.Minute, t0)
	if err != nil || !r.CancelRequested {
		t.Errorf("renew does not show the cancel: %+v %v", r, err)
	}
	// The agent died instead of stopping: expiry finishes it as cancelled.
	exp, err := s.Jobs().ExpireLeases(ctx, t0.Add(2*time.Minute))
	if err != nil || len(exp) != 1 || exp[0].Job.State != store.JobCancelled || exp[0].Requeued {
		t.Errorf("expiry of a cancelled lease: %+v %v", exp, err)
	}
	// Cancelling a finished job changes nothing.
	c, err = s.Jobs().RequestCancel(ctx, a.ID, running.ID, "again", t0)
	if err != nil || c.State != store.JobCancelled {
		t.Errorf("cancel finished: %+v %v", c, err)
	}
}

func testRelease(t *testing.T, s store.Store) {
	ctx := context.Background()
	o := mustOrg(t, s, "a")
	job := mustCreate(t, s, newJob(o.ID))
	l, _ := lease(s, o.ID, "agt")
	r, err := s.Jobs().Release(ctx, job.ID, l.Fence, t0.Add(time.Minute), "runner setup failed", t0)
	if err != nil || r.State != store.JobQueued || r.Attempt != 0 {
		t.Fatalf("release: %+v %v", r, err)
	}
	if _, err := lease(s, o.ID, "agt"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("released job leased before its not-before: %v", err)
	}
	if _, err := s.Jobs().Release(ctx, job.ID, l.Fence, t0, "again", t0); !errors.Is(err, store.ErrStaleFence) {
		t.Errorf("double release: %v", err)
	}
}

func testConcurrentLeases(t *testing.T, s store.Store) {
	o := mustOrg(t, s, "a")
	const n = 40
	for range n {
		mustCreate(t, s, newJob(o.ID))
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for a := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j, err := s.Jobs().Lease(context.Background(), store.LeaseRequest{
					OrgID: o.ID, AgentID: fmt.Sprintf("agt_%d", a), MaxJobs: 100, TTL: time.Minute, Now: t0,
				})
				if errors.Is(err, store.ErrNotFound) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[j.ID]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Errorf("%d jobs leased, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("job %s leased %d times", id, c)
		}
	}
	// MaxJobs bounds one agent.
	for range 3 {
		mustCreate(t, s, newJob(o.ID))
	}
	r := store.LeaseRequest{OrgID: o.ID, AgentID: "agt_small", MaxJobs: 2, TTL: time.Minute, Now: t0}
	for i := range 3 {
		_, err := s.Jobs().Lease(context.Background(), r)
		if i < 2 && err != nil {
			t.Fatalf("lease %d: %v", i, err)
		}
		if i == 2 && !errors.Is(err, store.ErrNotFound) {
			t.Errorf("lease beyond MaxJobs: %v", err)
		}
	}
}

func testAudit(t *testing.T, s store.Store) {
	ctx := context.Background()
	for i := range 5 {
		org := "org_a"
		if i%2 == 1 {
			org = "org_b"
		}
		if err := s.Audit().Append(ctx, store.AuditEntry{At: t0, OrgID: org, Actor: "system", Action: fmt.Sprintf("act.%d", i),
			Target: "t", Detail: map[string]string{"i": fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Audit().List(ctx, store.AuditFilter{OrgID: "org_a"})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range got {
		actions = append(actions, e.Action)
	}
	if diff := cmp.Diff([]string{"act.4", "act.2", "act.0"}, actions); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
	s.Audit().Append(ctx, store.AuditEntry{At: t0, Actor: "github", Action: "webhook.rejected", Target: "d"})
	withInst, err := s.Audit().List(ctx, store.AuditFilter{OrgID: "org_a", Installation: true})
	if err != nil || len(withInst) != 4 || withInst[0].Action != "webhook.rejected" {
		t.Errorf("with installation entries: %+v %v", withInst, err)
	}
	page, err := s.Audit().List(ctx, store.AuditFilter{OrgID: "org_a", BeforeID: got[0].ID, Limit: 1})
	if err != nil || len(page) != 1 || page[0].Action != "act.2" || page[0].Detail["i"] != "2" {
		t.Errorf("page: %+v %v", page, err)
	}
}

func testKeysAndSecrets(t *testing.T, s store.Store) {
	ctx := context.Background()
	k := store.SigningKey{ID: "k1", Algorithm: "EdDSA", Public: []byte("pub"), PrivateSealed: []byte("sealed"), CreatedAt: t0}
	if err := s.Keys().CreateSigningKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	k.RetiredAt, k.ExpiresAt, k.PrivateSealed = t0.Add(time.Hour), t0.Add(2*time.Hour), []byte("resealed")
	if err := s.Keys().UpdateSigningKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	list, err := s.Keys().ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]store.SigningKey{k}, list); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	if err := s.Keys().UpdateSigningKey(ctx, store.SigningKey{ID: "nope"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update unknown key: %v", err)
	}
	for _, v := range []string{"one", "two"} {
		if err := s.Keys().PutSecret(ctx, store.Secret{Name: "webhook", Sealed: []byte(v), UpdatedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	sec, err := s.Keys().GetSecret(ctx, "webhook")
	if err != nil || string(sec.Sealed) != "two" {
		t.Errorf("secret: %+v %v", sec, err)
	}
	if _, err := s.Keys().GetSecret(ctx, "none"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown secret: %v", err)
	}
}

func testDeliveries(t *testing.T, s store.Store) {
	ctx := context.Background()
	d := store.Delivery{ID: "72d3162e-cc78-11e3-81ab-4c9367dc0958", Event: "workflow_job", ReceivedAt: t0}
	if first, err := s.Deliveries().Record(ctx, d); err != nil || !first {
		t.Fatalf("first: %v %v", first, err)
	}
	if first, err := s.Deliveries().Record(ctx, d); err != nil || first {
		t.Fatalf("redelivery: %v %v", first, err)
	}
	if seen, err := s.Deliveries().Seen(ctx, d.ID); err != nil || !seen {
		t.Fatalf("seen: %v %v", seen, err)
	}
	if seen, err := s.Deliveries().Seen(ctx, "0b7c5d7e-0000-11e3-81ab-4c9367dc0958"); err != nil || seen {
		t.Fatalf("seen, never recorded: %v %v", seen, err)
	}
	if n, err := s.Deliveries().Prune(ctx, t0.Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("prune: %d %v", n, err)
	}
	if seen, err := s.Deliveries().Seen(ctx, d.ID); err != nil || seen {
		t.Fatalf("seen after prune: %v %v", seen, err)
	}
}

func testTxRollback(t *testing.T, s store.Store) {
	ctx := context.Background()
	boom := errors.New("boom")
	err := s.InTx(ctx, func(r store.Repos) error {
		if err := r.Orgs().Create(ctx, store.Org{ID: "org_tx", Name: "tx", CreatedAt: t0}); err != nil {
			return err
		}
		if _, _, err := r.Jobs().Create(ctx, newJob("org_tx")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx: %v", err)
	}
	if _, err := s.Orgs().Get(ctx, "org_tx"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rolled-back org exists: %v", err)
	}
}

func testSessions(t *testing.T, s store.Store) {
	ctx := context.Background()
	o := mustOrg(t, s, "a")
	ag := store.Agent{ID: "agt_r", OrgID: o.ID, Name: "rbs", CreatedAt: t0}
	if err := s.Agents().Create(ctx, ag); err != nil {
		t.Fatal(err)
	}
	offer := &store.AgentRBS{Address: "10.0.0.2:7443", InstallMD5s: []string{"abc"}, Versions: []string{"4.2.3"}, MaxSessions: 2}
	if err := s.Agents().SetRBS(ctx, ag.ID, offer); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Agents().Get(ctx, ag.ID)
	if diff := cmp.Diff(offer, got.RBS); diff != "" {
		t.Errorf("rbs offer (-want +got):\n%s", diff)
	}
	sess := store.Session{ID: "ses_1", OrgID: o.ID, User: "alice", Key: "k1", RepoHash: "r", InstallMD5: "abc", Request: `{"workspace":"/w"}`,
		AgentID: ag.ID, State: store.SessionPending, CreatedAt: t0, UpdatedAt: t0, LastUsedAt: t0}
	if err := s.Sessions().Create(ctx, sess); err != nil {
		t.Fatal(err)
	}
	dup := sess
	dup.ID = "ses_2"
	if err := s.Sessions().Create(ctx, dup); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second live session with the same key: %v", err)
	}
	live, err := s.Sessions().GetLive(ctx, "k1")
	if err != nil || live.ID != "ses_1" {
		t.Fatalf("get live: %+v %v", live, err)
	}
	if diff := cmp.Diff(sess, live); diff != "" {
		t.Errorf("session (-want +got):\n%s", diff)
	}
	ready, err := s.Sessions().Transition(ctx, "ses_1", []store.SessionState{store.SessionPending}, store.SessionReady, "10.0.0.2:7443", "", t0.Add(time.Second))
	if err != nil || ready.State != store.SessionReady || ready.Address != "10.0.0.2:7443" {
		t.Fatalf("ready: %+v %v", ready, err)
	}
	if _, err := s.Sessions().Transition(ctx, "ses_1", []store.SessionState{store.SessionPending}, store.SessionFailed, "", "x", t0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("transition from the wrong state: %v", err)
	}
	if n, _ := s.Sessions().CountLive(ctx, ag.ID); n != 1 {
		t.Errorf("%d live sessions", n)
	}
	if idle, _ := s.Sessions().Idle(ctx, t0.Add(time.Minute)); len(idle) != 1 {
		t.Errorf("idle: %v", idle)
	}
	if err := s.Sessions().Touch(ctx, "ses_1", t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if idle, _ := s.Sessions().Idle(ctx, t0.Add(time.Minute)); len(idle) != 0 {
		t.Errorf("touched session is idle: %v", idle)
	}
	stopped, err := s.Sessions().Transition(ctx, "ses_1", []store.SessionState{store.SessionReady, store.SessionStopping}, store.SessionStopped, "", "released", t0.Add(time.Hour))
	if err != nil || !stopped.StoppedAt.Equal(t0.Add(time.Hour)) || stopped.Reason != "released" || stopped.Address != "10.0.0.2:7443" {
		t.Fatalf("stopped: %+v %v", stopped, err)
	}
	// The key is free again once the session is over.
	if err := s.Sessions().Create(ctx, dup); err != nil {
		t.Errorf("new session after the old one stopped: %v", err)
	}
	list, err := s.Sessions().List(ctx, store.SessionFilter{OrgID: o.ID, User: "alice"})
	if err != nil || len(list) != 2 || list[0].ID != "ses_2" {
		t.Errorf("list: %+v %v", list, err)
	}
	if list, _ := s.Sessions().List(ctx, store.SessionFilter{OrgID: o.ID, User: "bob"}); len(list) != 0 {
		t.Errorf("bob sees %v", list)
	}
	if list, _ := s.Sessions().List(ctx, store.SessionFilter{AgentID: ag.ID, LiveOnly: true}); len(list) != 1 || list[0].ID != "ses_2" {
		t.Errorf("live on agent: %v", list)
	}
}

func testCacheTrust(t *testing.T, s store.Store) {
	ctx := context.Background()
	a, b := mustOrg(t, s, "a"), mustOrg(t, s, "b")
	if _, err := s.Orgs().CacheTrust(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("never set: %v, want ErrNotFound", err)
	}
	want := store.CacheTrust{OrgID: a.ID, UntrustedRefs: []string{"refs/heads/experiments/*"}, ACWriteRefs: []string{"refs/heads/main", "refs/tags/*"},
		UpdatedBy: "user:tok_1", UpdatedAt: t0}
	if err := s.Orgs().SetCacheTrust(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Orgs().CacheTrust(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cache trust (-want +got):\n%s", diff)
	}
	// Replaced as a whole; empty lists stay empty lists.
	want = store.CacheTrust{OrgID: a.ID, UntrustedRefs: []string{}, ACWriteRefs: []string{}, UpdatedBy: "user:tok_2", UpdatedAt: t0.Add(time.Hour)}
	if err := s.Orgs().SetCacheTrust(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Orgs().CacheTrust(ctx, a.ID); err != nil || cmp.Diff(want, got) != "" {
		t.Errorf("after replace: %+v %v", got, err)
	}
	// Per org.
	if _, err := s.Orgs().CacheTrust(ctx, b.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("org b: %v, want ErrNotFound", err)
	}
}
