package logs_test

import (
	"context"
	"errors"
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
