// Package logstest is the conformance suite every logs.Store passes (the
// embedded SQL store on SQLite and PostgreSQL today).
package logstest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nimbus-build/nimbus/internal/logs"
)

// Env is a store under test.
type Env struct {
	Store logs.Store
	// NewJob returns the id of a new job of org (creating the org when
	// the store needs one to exist).
	NewJob func(t *testing.T, org string) string
}

// Run runs the suite; open returns a new, empty store.
func Run(t *testing.T, open func(t *testing.T) Env) {
	tests := map[string]func(t *testing.T, e Env){
		"AppendIdempotent": testAppendIdempotent,
		"Usage":            testUsage,
		"Cursor":           testCursor,
		"OrgScope":         testOrgScope,
		"BatchOfJobs":      testBatchOfJobs,
		"LargeBatch":       testLargeBatch,
	}
	for name, fn := range tests {
		t.Run(name, func(t *testing.T) { fn(t, open(t)) })
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func chunk(org, job string, fence, seq int64, data string) logs.Chunk {
	return logs.Chunk{Org: org, Job: job, Fence: fence, Seq: seq, Data: []byte(data), At: t0, Counted: int64(len(data))}
}

func appendOK(t *testing.T, e Env, want int, chunks ...logs.Chunk) {
	t.Helper()
	n, err := e.Store.Append(context.Background(), chunks)
	if err != nil || n != want {
		t.Fatalf("append %d chunks: %d new, %v; want %d new", len(chunks), n, err, want)
	}
}

func readAll(t *testing.T, e Env, org, job string) []logs.Chunk {
	t.Helper()
	var out []logs.Chunk
	after := logs.Start
	for {
		page, err := e.Store.Read(context.Background(), org, job, after, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		last := page[len(page)-1]
		after = logs.Cursor{Fence: last.Fence, Seq: last.Seq}
	}
}

func text(cs []logs.Chunk) string {
	var b bytes.Buffer
	for _, c := range cs {
		b.Write(c.Data)
	}
	return b.String()
}

// A chunk sent again (a retried upload, or twice in one batch) is stored
// once, and the first copy stays.
func testAppendIdempotent(t *testing.T, e Env) {
	job := e.NewJob(t, "org_a")
	appendOK(t, e, 2, chunk("org_a", job, 1, 0, "a"), chunk("org_a", job, 1, 1, "b"))
	appendOK(t, e, 2, chunk("org_a", job, 1, 1, "B"), chunk("org_a", job, 1, 2, "c"), chunk("org_a", job, 2, 0, "d"))
	appendOK(t, e, 1, chunk("org_a", job, 2, 1, "e"), chunk("org_a", job, 2, 1, "E"))
	appendOK(t, e, 0, chunk("org_a", job, 1, 0, "A"))
	if got := text(readAll(t, e, "org_a", job)); got != "abcde" {
		t.Errorf("log %q, want abcde", got)
	}
	// Binary output survives as it was written.
	bin := string([]byte{0, 0xff, 0xfe, '\n', 0x1b, '['})
	appendOK(t, e, 1, chunk("org_a", job, 3, 0, bin))
	if got := text(readAll(t, e, "org_a", job)); got != "abcde"+bin {
		t.Errorf("log %q, want the binary chunk at the end", got)
	}
}

// Usage adds up what new chunks count, never a skipped one; Stored says
// which keys are there.
func testUsage(t *testing.T, e Env) {
	ctx := context.Background()
	job := e.NewJob(t, "org_a")
	used, stored, err := e.Store.Stored(ctx, "org_a", job, []logs.Key{{Fence: 1, Seq: 0}})
	if err != nil || used != 0 || len(stored) != 0 {
		t.Fatalf("empty log: used %d, stored %v, %v", used, stored, err)
	}
	cut := chunk("org_a", job, 1, 1, "45"+logs.Notice(6))
	cut.Counted = 2
	appendOK(t, e, 2, chunk("org_a", job, 1, 0, "0123"), cut)
	appendOK(t, e, 0, chunk("org_a", job, 1, 0, "0123"), chunk("org_a", job, 1, 1, "4567"))
	appendOK(t, e, 1, chunk("org_a", job, 2, 5, "xyz"))
	keys := []logs.Key{{Fence: 1, Seq: 0}, {Fence: 1, Seq: 1}, {Fence: 1, Seq: 2}, {Fence: 2, Seq: 4}, {Fence: 2, Seq: 5}, {Fence: 3, Seq: 0}}
	used, stored, err = e.Store.Stored(ctx, "org_a", job, keys)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(stored, func(a, b logs.Key) int { return int(a.Fence-b.Fence)*1000 + int(a.Seq-b.Seq) })
	if used != 9 {
		t.Errorf("used %d, want 9 (4 + 2 of the cut chunk + 3)", used)
	}
	if d := cmp.Diff([]logs.Key{{Fence: 1, Seq: 0}, {Fence: 1, Seq: 1}, {Fence: 2, Seq: 5}}, stored); d != "" {
		t.Errorf("stored keys (-want +got):\n%s", d)
	}
}

// Reads start after the cursor, in (fence, seq) order, up to the limit.
func testCursor(t *testing.T, e Env) {
	ctx := context.Background()
	job := e.NewJob(t, "org_a")
	// Appended out of order: read back in order.
	appendOK(t, e, 3, chunk("org_a", job, 2, 0, "d"), chunk("org_a", job, 1, 1, "b"), chunk("org_a", job, 1, 0, "a"))
	appendOK(t, e, 1, chunk("org_a", job, 1, 2, "c"))
	got, err := e.Store.Read(ctx, "org_a", job, logs.Cursor{Fence: 1, Seq: 0}, 2)
	if err != nil || text(got) != "bc" {
		t.Errorf("read after (1,0), limit 2: %q, %v; want bc", text(got), err)
	}
	if len(got) == 2 && (got[0].Fence != 1 || got[0].Seq != 1 || got[1].Seq != 2 || !got[0].At.Equal(t0)) {
		t.Errorf("chunks: %+v", got)
	}
	got, err = e.Store.Read(ctx, "org_a", job, logs.Cursor{Fence: 1, Seq: 2}, 0)
	if err != nil || text(got) != "d" {
		t.Errorf("read after (1,2): %q, %v; want d", text(got), err)
	}
	got, err = e.Store.Read(ctx, "org_a", job, logs.Cursor{Fence: 2, Seq: 0}, 0)
	if err != nil || len(got) != 0 {
		t.Errorf("read after the end: %+v, %v", got, err)
	}
	if got := text(readAll(t, e, "org_a", job)); got != "abcd" {
		t.Errorf("whole log %q", got)
	}
}

// Another org sees nothing of a job, nor its usage.
func testOrgScope(t *testing.T, e Env) {
	ctx := context.Background()
	job := e.NewJob(t, "org_a")
	e.NewJob(t, "org_b")
	appendOK(t, e, 1, chunk("org_a", job, 1, 0, "secret"))
	if got, err := e.Store.Read(ctx, "org_b", job, logs.Start, 0); err != nil || len(got) != 0 {
		t.Errorf("org b reads org a's job: %q, %v", text(got), err)
	}
	if used, stored, err := e.Store.Stored(ctx, "org_b", job, []logs.Key{{Fence: 1, Seq: 0}}); err != nil || used != 0 || len(stored) != 0 {
		t.Errorf("org b's view of org a's usage: %d %v %v", used, stored, err)
	}
	if got := text(readAll(t, e, "org_a", job)); got != "secret" {
		t.Errorf("org a's own log %q", got)
	}
}

// One append may carry several jobs' chunks (a batching ingest).
func testBatchOfJobs(t *testing.T, e Env) {
	ctx := context.Background()
	a, b := e.NewJob(t, "org_a"), e.NewJob(t, "org_a")
	c := e.NewJob(t, "org_b")
	appendOK(t, e, 4, chunk("org_a", a, 1, 0, "a0"), chunk("org_a", b, 1, 0, "b0"), chunk("org_b", c, 1, 0, "c0"), chunk("org_a", a, 1, 1, "a1"))
	appendOK(t, e, 1, chunk("org_a", a, 1, 1, "a1"), chunk("org_a", b, 1, 1, "b1"))
	for job, want := range map[string]string{a: "a0a1", b: "b0b1"} {
		if got := text(readAll(t, e, "org_a", job)); got != want {
			t.Errorf("job %s: %q, want %q", job, got, want)
		}
	}
	if got := text(readAll(t, e, "org_b", c)); got != "c0" {
		t.Errorf("org b's job: %q", got)
	}
	for job, want := range map[string]int64{a: 4, b: 4} {
		if used, _, err := e.Store.Stored(ctx, "org_a", job, nil); err != nil || used != want {
			t.Errorf("usage of %s: %d, %v; want %d", job, used, err, want)
		}
	}
}

// A batch larger than one statement's worth keeps every chunk, in order.
func testLargeBatch(t *testing.T, e Env) {
	job := e.NewJob(t, "org_a")
	var batch []logs.Chunk
	var want bytes.Buffer
	for i := range 1234 {
		s := fmt.Sprintf("line %d\n", i)
		batch = append(batch, chunk("org_a", job, 1, int64(i), s))
		want.WriteString(s)
	}
	appendOK(t, e, len(batch), batch...)
	appendOK(t, e, 0, batch...)
	if got := text(readAll(t, e, "org_a", job)); got != want.String() {
		t.Errorf("log of %d bytes, want %d", len(got), want.Len())
	}
	if used, _, err := e.Store.Stored(context.Background(), "org_a", job, nil); err != nil || used != int64(want.Len()) {
		t.Errorf("used %d, %v; want %d", used, err, want.Len())
	}
}
