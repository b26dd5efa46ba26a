package logs_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/jobs"
	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/notify"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/sqlstore"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

// fixture is the log service on a real store and job service, with one
// org and one agent.
type fixture struct {
	db    *sqlstore.DB
	jobs  *jobs.Service
	logs  *logs.Service
	org   string
	agent store.Agent
}

func newFixture(t *testing.T, engine string, limit int64) *fixture {
	t.Helper()
	db := storetest.Open(t, engine)
	ctx := context.Background()
	if err := db.Orgs().Create(ctx, store.Org{ID: "org_a", Name: "a", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	wake := notify.New()
	cfg := jobs.DefaultConfig()
	cfg.OrgJobRate = 0
	js, err := jobs.New(jobs.Options{Store: db, Config: cfg, Notifier: wake})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := logs.New(logs.Options{Store: db.Logs(), Jobs: js, Config: logs.Config{MaxBytes: limit}, Notifier: wake})
	if err != nil {
		t.Fatal(err)
	}
	agent := store.Agent{ID: "agt_1", OrgID: "org_a", Name: "a", Labels: []string{"linux"}, MaxJobs: 10, CreatedAt: time.Now()}
	if err := db.Agents().Create(ctx, agent); err != nil {
		t.Fatal(err)
	}
	return &fixture{db: db, jobs: js, logs: ls, org: "org_a", agent: agent}
}

// leased submits a job and leases it to the fixture's agent.
func (f *fixture) leased(t *testing.T) store.Job {
	t.Helper()
	ctx := context.Background()
	j, _, err := f.jobs.Submit(ctx, jobs.Submission{OrgID: f.org, CreatedBy: "test", Argv: []string{"true"}, Labels: []string{"linux"}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := f.jobs.Lease(ctx, f.agent, 0)
	if err != nil || l == nil || l.Job.ID != j.ID {
		t.Fatalf("lease %s: %+v, %v", j.ID, l, err)
	}
	return l.Job
}

func chunks(first int64, data ...string) []logs.Chunk {
	out := make([]logs.Chunk, len(data))
	for i, d := range data {
		out[i] = logs.Chunk{Seq: first + int64(i), Data: []byte(d)}
	}
	return out
}

func (f *fixture) read(t *testing.T, job string) string {
	t.Helper()
	var b strings.Builder
	err := f.logs.Follow(context.Background(), f.org, job, logs.Start, false, func(cs []logs.Chunk) error {
		for _, c := range cs {
			b.Write(c.Data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Output is taken only under the agent's live lease: another agent, an
// old fence and a finished job are refused, and nothing of theirs is kept.
func TestAppendChecksTheLease(t *testing.T) {
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			f := newFixture(t, engine, 0)
			ctx := context.Background()
			j := f.leased(t)
			other := store.Agent{ID: "agt_2", OrgID: "org_a"}
			if _, err := f.logs.Append(ctx, other, j.ID, j.Fence, chunks(0, "forged")); !errors.Is(err, store.ErrStaleFence) {
				t.Errorf("another agent: %v, want ErrStaleFence", err)
			}
			if _, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence+1, chunks(0, "forged")); !errors.Is(err, store.ErrStaleFence) {
				t.Errorf("a fence not issued: %v, want ErrStaleFence", err)
			}
			if _, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(0, "ok")); err != nil {
				t.Fatal(err)
			}
			if _, err := f.jobs.Complete(ctx, f.agent, j.ID, j.Fence, store.Outcome{State: store.JobSucceeded}); err != nil {
				t.Fatal(err)
			}
			if _, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(1, "late")); !errors.Is(err, store.ErrFinished) {
				t.Errorf("after completion: %v, want ErrFinished", err)
			}
			if got := f.read(t, j.ID); got != "ok" {
				t.Errorf("log %q, want only ok", got)
			}
		})
	}
}

// The job's output stops at the limit with one notice; retried chunks
// count once, also inside a retried upload that carries new chunks after
// stored ones; a later attempt's output is dropped; full is reported;
// another job is unaffected.
func TestLimit(t *testing.T) {
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			const limit = 10
			f := newFixture(t, engine, limit)
			ctx := context.Background()
			j := f.leased(t)
			for range 3 {
				if full, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(0, "0123")); err != nil || full {
					t.Fatalf("append: full=%v, %v", full, err)
				}
			}
			// The agent lost the answer to (1, 2): it sends them again with a
			// new chunk. Only 3 reaches the limit.
			if _, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(1, "45", "67")); err != nil {
				t.Fatal(err)
			}
			full, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(1, "45", "67", "89abcdef", "ghij"))
			if err != nil || !full {
				t.Fatalf("append past the limit: full=%v, %v; want full", full, err)
			}
			if full, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(5, "more")); err != nil || !full {
				t.Errorf("append to a full log: full=%v, %v", full, err)
			}
			want := "0123456789" + logs.Notice(limit)
			if got := f.read(t, j.ID); got != want {
				t.Errorf("log %q, want %q", got, want)
			}
			// The next attempt of the job (a new lease) adds nothing.
			if _, err := f.db.Jobs().Release(ctx, j.ID, j.Fence, time.Time{}, "test", time.Now()); err != nil {
				t.Fatal(err)
			}
			l, err := f.jobs.Lease(ctx, f.agent, 0)
			if err != nil || l == nil {
				t.Fatalf("lease again: %v", err)
			}
			if full, err := f.logs.Append(ctx, f.agent, j.ID, l.Job.Fence, chunks(0, "second attempt")); err != nil || !full {
				t.Errorf("next attempt: full=%v, %v", full, err)
			}
			if got := f.read(t, j.ID); got != want {
				t.Errorf("log after the next attempt %q, want %q", got, want)
			}
			other := f.leased(t)
			if full, err := f.logs.Append(ctx, f.agent, other.ID, other.Fence, chunks(0, "other job")); err != nil || full {
				t.Errorf("other job: full=%v, %v", full, err)
			}
			if got := f.read(t, other.ID); got != "other job" {
				t.Errorf("other job's log %q", got)
			}
		})
	}
}

// A tail delivers output as it arrives and ends once the job has ended
// and all of it is delivered; another org's job is not found.
func TestFollow(t *testing.T) {
	f := newFixture(t, "sqlite", 0)
	ctx := context.Background()
	j := f.leased(t)
	got := make(chan string, 100)
	done := make(chan error, 1)
	go func() {
		done <- f.logs.Follow(ctx, f.org, j.ID, logs.Start, true, func(cs []logs.Chunk) error {
			for _, c := range cs {
				got <- string(c.Data)
			}
			return nil
		})
	}()
	for i, s := range []string{"one ", "two ", "three"} {
		if _, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(int64(i), s)); err != nil {
			t.Fatal(err)
		}
		if c := <-got; c != s {
			t.Fatalf("tail delivered %q, want %q", c, s)
		}
	}
	if _, err := f.jobs.Complete(ctx, f.agent, j.ID, j.Fence, store.Outcome{State: store.JobSucceeded}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("tail ended with %v", err)
	}
	err := f.logs.Follow(ctx, "org_b", j.ID, logs.Start, false, func([]logs.Chunk) error { return nil })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another org's job: %v, want ErrNotFound", err)
	}
}
