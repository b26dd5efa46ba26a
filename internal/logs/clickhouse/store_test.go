package clickhouse_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/logs/clickhouse"
	"github.com/nimbus-build/nimbus/internal/logs/logstest"
)

// Open returns a ClickHouse store on a database of its own, dropped when
// the test ends. The server is NIMBUS_TEST_CLICKHOUSE (scripts/test-deps.sh
// starts one); without it the test is skipped, or fails under CI=true.
func Open(t *testing.T) *clickhouse.Store { return clickhouse.OpenTestStore(t) }

func TestConformance(t *testing.T) {
	logstest.Run(t, func(t *testing.T) logstest.Env {
		s := Open(t)
		n := 0
		return logstest.Env{Store: s, NewJob: func(t *testing.T, org string) string {
			n++
			return fmt.Sprintf("job_%s_%d", org, n)
		}}
	})
}

// Retention without table TTLs (ClickHouse before 19.6) drops whole days.
func TestDropBefore(t *testing.T) {
	s := Open(t)
	ctx := context.Background()
	old := time.Now().Add(-40 * 24 * time.Hour)
	for i, at := range []time.Time{old, time.Now()} {
		job := fmt.Sprintf("job_%d", i)
		w := logs.Write{Org: "org_a", Job: job, State: logs.State{Version: 1, Cursor: logs.Cursor{Fence: 1, Seq: 0}, Lines: 1},
			Chunks: []logs.Chunk{{Org: "org_a", Job: job, Fence: 1, Data: []byte("x\n"), At: at}},
			Lines:  []logs.Line{{Org: "org_a", Job: job, N: 1, Fence: 1, Stream: logs.StreamOutput, At: at, Text: "x"}}}
		if errs, err := s.Write(ctx, []logs.Write{w}); err != nil || errs[0] != nil {
			t.Fatal(err, errs)
		}
	}
	n, err := s.DropBefore(ctx, time.Now().Add(-30*24*time.Hour))
	if err != nil || n < 2 {
		t.Fatalf("dropped %d partitions, %v", n, err)
	}
	for i, want := range []int{0, 1} {
		got, err := s.Lines(ctx, "org_a", fmt.Sprintf("job_%d", i), logs.LineQuery{From: 1})
		if err != nil || len(got) != want {
			t.Errorf("job %d: %d lines, %v; want %d", i, len(got), err, want)
		}
	}
}

// A pattern whose rewrite the server cannot compile (past RE2's program
// size) is filtered in Go alone, with the literals still checked first
// by the server.
func TestSearchPatternTheServerRefuses(t *testing.T) {
	s := Open(t)
	ctx := context.Background()
	at := time.Now()
	long := strings.Repeat("é", 1000)
	texts := []string{"x " + long, "y " + long[:len(long)-2] + "!", "z " + long}
	w := logs.Write{Org: "org_a", Job: "job_1", State: logs.State{Version: 1, Cursor: logs.Cursor{Fence: 1, Seq: 0}, Lines: int64(len(texts))}}
	for i, text := range texts {
		w.Lines = append(w.Lines, logs.Line{Org: "org_a", Job: "job_1", N: int64(i + 1), Fence: 1, Stream: logs.StreamOutput, At: at, Text: text})
	}
	if errs, err := s.Write(ctx, []logs.Write{w}); err != nil || errs[0] != nil {
		t.Fatal(err, errs)
	}
	for _, tc := range []struct {
		pattern string
		want    []string
	}{
		{`\pL{1000}`, []string{"z", "x"}}, // no literal: the pattern alone
		{`z \pL{1000}`, []string{"z"}},    // a literal first
		{`y \pL{1000}`, nil},              // the literal's line does not match
	} {
		q, err := logs.NewQuery("org_a", logs.SearchParams{Pattern: tc.pattern, Since: at.Add(-time.Hour)}, at.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Search(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", tc.pattern, err)
		}
		var got []string
		for _, l := range res.Lines {
			got = append(got, l.Text[:1])
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: found %q, want %q", tc.pattern, got, tc.want)
		}
	}
}
