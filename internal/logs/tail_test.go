package logs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

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
