package logs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/store"
	"github.com/nimbus-build/nimbus/internal/store/storetest"
)

// Tail reads a job's last lines, in order, of its own org only.
func TestTail(t *testing.T) {
	for _, engine := range storetest.Engines {
		t.Run(engine, func(t *testing.T) {
			f := newFixture(t, engine, 0)
			ctx := context.Background()
			j := f.leased(t)
			if got, err := f.logs.Tail(ctx, f.org, j.ID, 5); err != nil || len(got) != 0 {
				t.Errorf("no output yet: %v %v", got, err)
			}
			if _, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(0, "one\ntwo\n", "three\nfour\nunfinished"), false); err != nil {
				t.Fatal(err)
			}
			text := func(ls []logs.Line) []string {
				var out []string
				for _, l := range ls {
					out = append(out, l.Text)
				}
				return out
			}
			got, err := f.logs.Tail(ctx, f.org, j.ID, 2)
			if diff := cmp.Diff([]string{"three", "four"}, text(got)); err != nil || diff != "" {
				t.Errorf("last 2 (-want +got) %v:\n%s", err, diff)
			}
			got, err = f.logs.Tail(ctx, f.org, j.ID, 100)
			if diff := cmp.Diff([]string{"one", "two", "three", "four"}, text(got)); err != nil || diff != "" {
				t.Errorf("last 100 (-want +got) %v:\n%s", err, diff)
			}
			if _, err := f.logs.Tail(ctx, "org_other", j.ID, 2); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("another org: %v, want not found", err)
			}
		})
	}
}

// countingStore counts the store's line and chunk reads.
type countingStore struct {
	logs.Store
	lines, reads int
}

func (c *countingStore) Lines(ctx context.Context, org, job string, q logs.LineQuery) ([]logs.Line, error) {
	c.lines++
	return c.Store.Lines(ctx, org, job, q)
}

func (c *countingStore) Read(ctx context.Context, org, job string, after logs.Cursor, limit int) ([]logs.Chunk, error) {
	c.reads++
	return c.Store.Read(ctx, org, job, after, limit)
}

// A follow reads the store once per thousand lines (or chunks) it
// delivers: a read that gets fewer has all there is, and no second read
// is made to find nothing (on ClickHouse, a round trip of a live tail's
// every wake-up).
func TestFollowReadsOnlyWhatIsThere(t *testing.T) {
	f := newFixture(t, "sqlite", 0)
	ctx := context.Background()
	cs := &countingStore{Store: f.db.Logs()}
	ls, err := logs.New(logs.Options{Store: cs, Jobs: f.jobs})
	if err != nil {
		t.Fatal(err)
	}
	j := f.leased(t)
	var out strings.Builder
	for i := range 1500 {
		fmt.Fprintf(&out, "line %d\n", i)
	}
	if _, err := f.logs.Append(ctx, f.agent, j.ID, j.Fence, chunks(0, out.String()), false); err != nil {
		t.Fatal(err)
	}
	var got int
	if err := ls.FollowLines(ctx, f.org, j.ID, logs.LineQuery{}, false, func(l []logs.Line) error { got += len(l); return nil }); err != nil {
		t.Fatal(err)
	}
	if got != 1500 || cs.lines != 2 {
		t.Errorf("followed %d lines in %d reads, want 1500 in 2", got, cs.lines)
	}
	if err := ls.Follow(ctx, f.org, j.ID, logs.Start, false, func([]logs.Chunk) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if cs.reads != 1 {
		t.Errorf("followed one chunk in %d reads, want 1", cs.reads)
	}
}

// tail follows job's lines through ls until ctx ends, sending each.
func tail(ctx context.Context, t *testing.T, ls *logs.Service, org, job string) <-chan logs.Line {
	out := make(chan logs.Line, 100)
	go func() {
		defer close(out)
		err := ls.FollowLines(ctx, org, job, logs.LineQuery{}, true, func(l []logs.Line) error {
			for _, x := range l {
				out <- x
			}
			return nil
		})
		if err != nil && ctx.Err() == nil {
			t.Errorf("follow: %v", err)
		}
	}()
	return out
}

// expect reads want's lines from c, in order, and nothing else.
func expect(t *testing.T, c <-chan logs.Line, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case l := <-c:
			if l.Text != w {
				t.Fatalf("line %d: %q, want %q", l.N, l.Text, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no line %q within 10 s", w)
		}
	}
}

// A live tail shows what this process just stored from memory: its
// reads of the store do not grow with the writes it follows (on
// ClickHouse, a query under load saved on every line a tail shows).
func TestLiveTailFromMemory(t *testing.T) {
	f := newFixture(t, "sqlite", 0)
	cs := &countingStore{Store: f.db.Logs()}
	// No poll (it reads the store, for wake-ups lost between replicas):
	// the reads counted are those the writes cause.
	ls, err := logs.New(logs.Options{Store: cs, Jobs: f.jobs, Notifier: f.wake, Config: logs.Config{PollInterval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	j := f.leased(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := ls.Append(ctx, f.agent, j.ID, j.Fence, chunks(0, "first\n"), false); err != nil {
		t.Fatal(err)
	}
	c := tail(ctx, t, ls, f.org, j.ID)
	expect(t, c, "first")
	for i := range 20 {
		if _, err := ls.Append(ctx, f.agent, j.ID, j.Fence, chunks(int64(i+1), fmt.Sprintf("a%d\nb%d\n", i, i)), false); err != nil {
			t.Fatal(err)
		}
		expect(t, c, fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i))
	}
	cancel()
	for range c {
	}
	// The first read only, where there was one a write.
	if cs.lines > 1 {
		t.Errorf("%d reads of the store for 20 writes followed", cs.lines)
	}
}

// Two replicas write one job's log in turn (an agent's uploads spread
// by a load balancer): a tail on one of them shows every line once, in
// order, those the other stored read from the store.
func TestLiveTailAcrossReplicas(t *testing.T) {
	f := newFixture(t, "sqlite", 0)
	replicas := []*logs.Service{f.logs}
	other, err := logs.New(logs.Options{Store: f.db.Logs(), Jobs: f.jobs, Notifier: f.wake})
	if err != nil {
		t.Fatal(err)
	}
	replicas = append(replicas, other)
	j := f.leased(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := tail(ctx, t, f.logs, f.org, j.ID)
	for i, seq := range []int{0, 1, 1, 0, 1, 0, 0, 1} {
		if _, err := replicas[seq].Append(ctx, f.agent, j.ID, j.Fence, chunks(int64(i), fmt.Sprintf("%d:%d a\n%d:%d b\n", i, seq, i, seq)), false); err != nil {
			t.Fatal(err)
		}
		expect(t, c, fmt.Sprintf("%d:%d a", i, seq), fmt.Sprintf("%d:%d b", i, seq))
	}
	cancel()
	for l := range c {
		t.Errorf("a line more: %d %q", l.N, l.Text)
	}
}
