package api_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
)

// A logs upload in the binary form (apiv1.ContentTypeLogs) stores what
// the same upload in JSON stores; a malformed one is a 400 with the API's
// JSON error, and stores nothing.
func TestAppendLogsBinary(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	chunks := []string{"start\n::group::Build\ncomp", "iling\n", "", "::endgroup::\r\nno newline at the end"}
	var cs []apiv1.LogChunk
	for i, c := range chunks {
		cs = append(cs, apiv1.LogChunk{Seq: int64(i), Data: []byte(c)})
	}
	lease := map[string]apiv1.Lease{}
	for _, org := range []string{"a", "b"} {
		var l apiv1.Lease
		must(t, w.agentC[org], "POST", apiv1.PathAgentLease, apiv1.LeaseRequest{}, &l)
		if l.Job.ID != w.job[org] {
			t.Fatalf("org %s leased %+v", org, l)
		}
		lease[org] = l
	}
	// Org a's agent sends JSON, org b's the binary form, after malformed
	// bodies that change nothing.
	var jsonAck apiv1.LogsAck
	must(t, w.agentC["a"], "POST", apiv1.PathAgentJob(w.job["a"], "logs"), apiv1.Logs{Fence: lease["a"].Fence, Chunks: cs, End: true}, &jsonAck)

	b := lease["b"]
	head := "NLOG\x01\x00" + string(rune(b.Fence*2)) // zigzag fence, < 64
	if b.Fence >= 64 {
		t.Fatalf("fence %d: the malformed bodies below assume a one-byte fence", b.Fence)
	}
	big := strings.Repeat("x", 1<<20+1)
	for _, tc := range []struct {
		name, body, want string
	}{
		{"empty", "", "magic"},
		{"short", "NLOG\x01", "magic"},
		{"bad magic", "NLOX\x01\x00\x02\x00", "magic"},
		{"version", "NLOG\x09\x00\x02\x00", "version 9"},
		{"count past the body", head + "\x05\x00\x01a", "chunk count 5"},
		{"chunk over the limit", head + "\x01\x00\x81\x80\x40" + big, "data of 1048577 bytes, at most 1048576"},
		{"length past the end", head + "\x01\x00\x10abc", "runs past the end"},
		{"trailing garbage", head + "\x01\x00\x03abc" + "junk", "4 bytes after the last chunk"},
		{"varint over 64 bits", head + "\x01" + strings.Repeat("\xff", 10) + "\x01\x00", "over 64 bits"},
		{"seq over int64", head + "\x01" + strings.Repeat("\x80", 9) + "\x01\x00", "at most 2^63-1"},
		{"cut in a varint", head + "\x01\x00\x80", "the body ends inside it"},
		{"no chunks, no end", head + "\x00", "chunks: empty"},
	} {
		_, err := w.agentC["b"].Do(ctx, "POST", apiv1.PathAgentJob(b.Job.ID, "logs"),
			apiclient.Body{ContentType: apiv1.ContentTypeLogs, Data: []byte(tc.body)}, nil)
		var ae *apiclient.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest || ae.Code != apiv1.CodeBadRequest || !strings.Contains(ae.Message, tc.want) {
			t.Errorf("%s: %v; want a 400 %s with %q", tc.name, err, apiv1.CodeBadRequest, tc.want)
		}
	}
	// A body past the server's 8 MiB, however well formed, is a 413.
	var huge []apiv1.LogChunk
	for i := range 9 {
		huge = append(huge, apiv1.LogChunk{Seq: int64(i), Data: []byte(big[:1<<20])})
	}
	hugeBody, err := apiclient.LogsBody(apiv1.Logs{Fence: b.Fence, Chunks: huge})
	if err != nil {
		t.Fatal(err)
	}
	var ae *apiclient.Error
	if _, err := w.agentC["b"].Do(ctx, "POST", apiv1.PathAgentJob(b.Job.ID, "logs"), hugeBody, nil); !errors.As(err, &ae) ||
		ae.Status != http.StatusRequestEntityTooLarge || ae.Code == "" {
		t.Errorf("a 9 MiB body: %v; want a 413 with a JSON error", err)
	}
	// A type that is neither JSON nor the binary form.
	if _, err := w.agentC["b"].Do(ctx, "POST", apiv1.PathAgentJob(b.Job.ID, "logs"),
		apiclient.Body{ContentType: "application/octet-stream", Data: []byte("NLOG")}, nil); !apiclient.IsStatus(err, http.StatusUnsupportedMediaType) {
		t.Errorf("octet-stream: %v; want 415", err)
	}
	// More chunks than one upload may hold, in either form: each would
	// cost the server a LogChunk however small its data.
	var many []apiv1.LogChunk
	for i := range apiv1.MaxLogChunks + 1 {
		many = append(many, apiv1.LogChunk{Seq: int64(i), Data: []byte("x")})
	}
	manyBody, err := apiclient.LogsBody(apiv1.Logs{Fence: b.Fence, Chunks: many})
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []any{manyBody, apiv1.Logs{Fence: b.Fence, Chunks: many}} {
		if _, err := w.agentC["b"].Do(ctx, "POST", apiv1.PathAgentJob(b.Job.ID, "logs"), req, nil); !errors.As(err, &ae) ||
			ae.Status != http.StatusBadRequest || !strings.Contains(ae.Message, "at most 10000") {
			t.Errorf("%d chunks in %T: %v; want a 400", len(many), req, err)
		}
	}
	if raw := rawLog(t, w, "b"); raw != "" {
		t.Fatalf("after malformed uploads, job b's log is %q; want empty", raw)
	}

	body, err := apiclient.LogsBody(apiv1.Logs{Fence: b.Fence, Chunks: cs, End: true})
	if err != nil {
		t.Fatal(err)
	}
	var binAck apiv1.LogsAck
	must(t, w.agentC["b"], "POST", apiv1.PathAgentJob(b.Job.ID, "logs"), body, &binAck)
	if binAck != jsonAck || binAck.Seq != int64(len(chunks)-1) {
		t.Errorf("binary ack %+v, JSON ack %+v; want seq %d for both", binAck, jsonAck, len(chunks)-1)
	}
	// Sent again, it is stored once.
	must(t, w.agentC["b"], "POST", apiv1.PathAgentJob(b.Job.ID, "logs"), body, &binAck)
	if raw, want := rawLog(t, w, "b"), strings.Join(chunks, ""); raw != want || rawLog(t, w, "a") != want {
		t.Errorf("raw logs: binary %q, JSON %q; want %q", raw, rawLog(t, w, "a"), want)
	}
	if got, want := logLines(t, w, "b"), logLines(t, w, "a"); strings.Join(got, "\n") != strings.Join(want, "\n") || len(want) != 5 {
		t.Errorf("lines of the binary upload %q; of the JSON one %q", got, want)
	}
}

func rawLog(t *testing.T, w *world, org string) string {
	t.Helper()
	viewer := w.tokens[org][auth.RoleOwner]
	if viewer == nil {
		viewer = w.tokens[org][auth.RoleAdmin]
	}
	resp, err := viewer.Raw(context.Background(), "GET", "/api/v1/jobs/"+w.job[org]+"/logs", nil)
	if err != nil {
		t.Fatal(err)
	}
	return readAll(resp)
}

func logLines(t *testing.T, w *world, org string) []string {
	t.Helper()
	viewer := w.tokens[org][auth.RoleOwner]
	if viewer == nil {
		viewer = w.tokens[org][auth.RoleAdmin]
	}
	var lines []string
	err := viewer.FollowJobLines(context.Background(), w.job[org], apiclient.LineQuery{}, false, func(l apiv1.LogLine) error {
		lines = append(lines, l.Step+"|"+l.Stream+"|"+l.Text)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lines
}
