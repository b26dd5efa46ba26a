package logs_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	wake  *notify.Notifier
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
	return &fixture{db: db, jobs: js, logs: ls, org: "org_a", agent: agent, wake: wake}
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

func (f *fixture) lines(t *testing.T, job string) []string {
	t.Helper()
	var out []string
	err := f.logs.FollowLines(context.Background(), f.org, job, logs.LineQuery{}, false, func(ls []logs.Line) error {
		for _, l := range ls {
			out = append(out, l.Text)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
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
			if _, err := f.logs.Append(ctx, other, j.ID, j.Fence, chunks(0, "forged"), false); !errors.Is(err, store.ErrStaleFence) {
				t.Errorf("another agent: %v, want ErrStaleFence", err)
			}
			if _, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence+1, chunks(0, "forged"), false); !errors.Is(err, store.ErrStaleFence) {
				t.Errorf("a fence not issued: %v, want ErrStaleFence", err)
			}
			if _, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(0, "ok"), false); err != nil {
				t.Fatal(err)
			}
			if _, err := f.jobs.Complete(ctx, f.agent, j.ID, j.Fence, store.Outcome{State: store.JobSucceeded}); err != nil {
				t.Fatal(err)
			}
			if _, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(1, "late"), false); !errors.Is(err, store.ErrFinished) {
				t.Errorf("after completion: %v, want ErrFinished", err)
			}
			if got := f.read(t, j.ID); got != "ok" {
				t.Errorf("log %q, want only ok", got)
			}
		})
	}
}

// The job's output stops at the limit, at a line boundary, with one
// notice line; retried chunks count once, also inside a retried upload
// that carries new chunks after stored ones; a later attempt's output is
// dropped; full is reported; another job is unaffected.
func TestLimit(t *testing.T) {
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			const limit = 16
			f := newFixture(t, engine, limit)
			ctx := context.Background()
			j := f.leased(t)
			for range 3 {
				if a, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(0, "012\n"), false); err != nil || a.Full || a.Seq != 0 {
					t.Fatalf("append: %+v, %v", a, err)
				}
			}
			// The agent lost the answer to (1, 2): it sends them again with a
			// new chunk. The line that crosses the limit is dropped whole.
			if _, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(1, "45\n", "67\n"), false); err != nil {
				t.Fatal(err)
			}
			a, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(1, "45\n", "67\n", "89\nabcdef\n", "ghij"), false)
			if err != nil || !a.Full || a.Seq != 4 {
				t.Fatalf("append past the limit: %+v, %v; want full, acknowledged to 4", a, err)
			}
			if a, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(5, "more"), false); err != nil || !a.Full || a.Seq != 5 {
				t.Errorf("append to a full log: %+v, %v", a, err)
			}
			want := "012\n45\n67\n89\n" + logs.Notice(limit) + "\n"
			if got := f.read(t, j.ID); got != want {
				t.Errorf("log %q, want %q", got, want)
			}
			wantLines := []string{"012", "45", "67", "89", logs.Notice(limit)}
			if got := f.lines(t, j.ID); !slices.Equal(got, wantLines) {
				t.Errorf("lines %q, want %q", got, wantLines)
			}
			// The next attempt of the job (a new lease) adds nothing.
			if _, err := f.db.Jobs().Release(ctx, j.ID, j.Fence, time.Time{}, "test", time.Now()); err != nil {
				t.Fatal(err)
			}
			l, err := f.jobs.Lease(ctx, f.agent, 0)
			if err != nil || l == nil {
				t.Fatalf("lease again: %v", err)
			}
			if a, err := f.logs.Append(ctx, f.agent, j.ID, l.Job.Fence, chunks(0, "second attempt\n"), false); err != nil || !a.Full {
				t.Errorf("next attempt: %+v, %v", a, err)
			}
			if got := f.read(t, j.ID); got != want {
				t.Errorf("log after the next attempt %q, want %q", got, want)
			}
			other := f.leased(t)
			if a, err := f.logs.Append(ctx, f.agent, other.ID, other.Fence, chunks(0, "other job\n"), false); err != nil || a.Full {
				t.Errorf("other job: %+v, %v", a, err)
			}
			if got := f.read(t, other.ID); got != "other job\n" {
				t.Errorf("other job's log %q", got)
			}
		})
	}
}

// A line that began in an earlier upload and crosses the limit in the
// next is not a line of the log (its start shows in the raw output): the
// lines end at the last complete one, then the notice.
func TestLimitCutsAPendingLine(t *testing.T) {
	f := newFixture(t, "sqlite", 10)
	ctx := context.Background()
	j := f.leased(t)
	if _, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(0, "ab\ncde"), false); err != nil {
		t.Fatal(err)
	}
	if a, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(1, "fghijk\n"), false); err != nil || !a.Full {
		t.Fatalf("%+v, %v", a, err)
	}
	if got, want := f.read(t, j.ID), "ab\ncde\n"+logs.Notice(10)+"\n"; got != want {
		t.Errorf("log %q, want %q", got, want)
	}
	if got, want := f.lines(t, j.ID), []string{"ab", logs.Notice(10)}; !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}

// Lines are cut from the chunks as they come, whatever the chunks'
// boundaries: a line may span chunks, a chunk hold many lines; steps
// follow ::group:: markers; the attempt's last line ends at End, or when
// the next attempt starts; long lines go on in the next line; chunks
// after a gap wait, and resent ones are stored once.
func TestLinesFromChunks(t *testing.T) {
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			f := newFixture(t, engine, 0)
			ctx := context.Background()
			j := f.leased(t)
			ack := func(first int64, end bool, data ...string) logs.Ack {
				t.Helper()
				a, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(first, data...), end)
				if err != nil {
					t.Fatal(err)
				}
				return a
			}
			if a := ack(0, false, "hel", "lo\nwor", "ld\r\n::group::Bu"); a.Seq != 2 {
				t.Errorf("ack %+v", a)
			}
			if a := ack(5, false, "after a gap"); a.Seq != 2 {
				t.Errorf("a chunk after a gap: ack %+v, want 2", a)
			}
			ack(2, false, "ld::group::Bu", "ild\ncc\n::endgroup::\n", "tail without newline")
			if got, want := f.lines(t, j.ID), []string{"hello", "world", "::group::Build", "cc", "::endgroup::"}; !slices.Equal(got, want) {
				t.Errorf("lines %q, want %q", got, want)
			}
			if a := ack(5, true); a.Seq != 4 {
				t.Errorf("end: ack %+v", a)
			}
			ack(5, true) // again: nothing more
			lines, err := f.db.Logs().Lines(ctx, f.org, j.ID, logs.LineQuery{From: 1})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range lines {
				got = append(got, fmt.Sprintf("%d %s %q", l.N, l.Step, l.Text))
			}
			want := []string{`1  "hello"`, `2  "world"`, `3 Build "::group::Build"`, `4 Build "cc"`, `5 Build "::endgroup::"`, `6  "tail without newline"`}
			if !slices.Equal(got, want) {
				t.Errorf("lines %q, want %q", got, want)
			}
			if got := f.read(t, j.ID); got != "hello\nworld\r\n::group::Build\ncc\n::endgroup::\ntail without newline" {
				t.Errorf("raw %q", got)
			}
			long := strings.Repeat("x", logs.MaxLine+10)
			ack(5, false, long[:100], long[100:]+"\n")
			if got := f.lines(t, j.ID); len(got) != 8 || len(got[6]) != logs.MaxLine || got[7] != "xxxxxxxxxx" {
				t.Errorf("a long line: %d lines", len(got))
			}
		})
	}
}

// A new attempt ends the last one's unfinished line; its steps start
// afresh.
func TestNewAttemptEndsTheLine(t *testing.T) {
	f := newFixture(t, "sqlite", 0)
	ctx := context.Background()
	j := f.leased(t)
	if _, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(0, "::group::One\nhalf a li"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Jobs().Release(ctx, j.ID, j.Fence, time.Time{}, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	l, err := f.jobs.Lease(ctx, f.agent, 0)
	if err != nil || l == nil {
		t.Fatalf("lease again: %v", err)
	}
	if _, err := f.logs.Append(ctx, f.agent, j.ID, l.Job.Fence, chunks(0, "again\n"), false); err != nil {
		t.Fatal(err)
	}
	lines, err := f.db.Logs().Lines(ctx, f.org, j.ID, logs.LineQuery{From: 1})
	if err != nil || len(lines) != 3 || lines[1].Text != "half a li" || lines[1].Step != "One" || lines[2].Step != "" || lines[2].Fence != l.Job.Fence {
		t.Errorf("lines %+v, %v", lines, err)
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
		if _, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(int64(i), s), false); err != nil {
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

// Two replicas (two services on one database) take a job's uploads in
// turn: each one's view of the log may be stale, and the store's
// compare-and-set puts every chunk in once, in order.
func TestReplicasShareALog(t *testing.T) {
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			f := newFixture(t, engine, 0)
			ctx := context.Background()
			other, err := logs.New(logs.Options{Store: f.db.Logs(), Jobs: f.jobs})
			if err != nil {
				t.Fatal(err)
			}
			j := f.leased(t)
			replicas := []*logs.Service{f.logs, other}
			for i := range 6 {
				// Each upload resends the previous chunk too (a lost ack).
				up := []logs.Chunk{{Seq: int64(i), Data: fmt.Appendf(nil, "line %d\n", i)}}
				if i > 0 {
					up = append([]logs.Chunk{{Seq: int64(i - 1), Data: fmt.Appendf(nil, "line %d\n", i-1)}}, up...)
				}
				a, err := replicas[i%2].Append(ctx, f.agent, j.ID, j.Fence, up, false)
				if err != nil || a.Seq != int64(i) {
					t.Fatalf("upload %d on replica %d: %+v, %v", i, i%2, a, err)
				}
			}
			want := []string{"line 0", "line 1", "line 2", "line 3", "line 4", "line 5"}
			if got := f.lines(t, j.ID); !slices.Equal(got, want) {
				t.Errorf("lines %q, want %q", got, want)
			}
		})
	}
}
