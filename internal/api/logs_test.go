package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
)

// leaseAndLog leases org's job to its agent in the world and uploads
// output for it.
func (w *world) leaseAndLog(t *testing.T, org string, chunks ...string) apiv1.Lease {
	t.Helper()
	var l apiv1.Lease
	code, err := w.agentC[org].Do(context.Background(), "POST", "/api/v1/agent/lease", apiv1.LeaseRequest{}, &l)
	if err != nil || code != http.StatusOK || l.Job.ID != w.job[org] {
		t.Fatalf("lease org %s's job: %d %+v %v", org, code, l, err)
	}
	var cs []apiv1.LogChunk
	for i, c := range chunks {
		cs = append(cs, apiv1.LogChunk{Seq: int64(i), Data: []byte(c)})
	}
	var ack apiv1.LogsAck
	must(t, w.agentC[org], "POST", apiv1.PathAgentJob(l.Job.ID, "logs"), apiv1.Logs{Fence: l.Fence, Chunks: cs, End: true}, &ack)
	if ack.Seq != int64(len(chunks)-1) {
		t.Fatalf("ack %+v", ack)
	}
	return l
}

// A job's lines read back by number and step, as JSON lines, text and
// Server-Sent Events resuming after Last-Event-ID.
func TestJobLogLines(t *testing.T) {
	w := newWorld(t)
	w.leaseAndLog(t, "a", "start\n::group::Build\ncomp", "iling\n::endgroup::\nno newline at the end")
	viewer := w.tokens["a"][auth.RoleViewer]
	var lines []string
	err := viewer.FollowJobLines(context.Background(), w.job["a"], apiclient.LineQuery{}, false, func(l apiv1.LogLine) error {
		lines = append(lines, l.Step+"|"+l.Text)
		if l.Job != w.job["a"] || l.Stream != "output" || l.At.IsZero() {
			t.Errorf("line %+v", l)
		}
		return nil
	})
	want := []string{"|start", "Build|::group::Build", "Build|compiling", "Build|::endgroup::", "|no newline at the end"}
	if err != nil || strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines %q, %v; want %q", lines, err, want)
	}
	get := func(query string, header http.Header) (int, string) {
		req, _ := http.NewRequest("GET", w.h.URL+"/api/v1/jobs/"+w.job["a"]+"/logs?"+query, nil)
		req.Header.Set("Authorization", "Bearer "+viewer.Token)
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, readAll(resp)
	}
	if code, body := get("step=Build", nil); code != 200 || body != "::group::Build\ncompiling\n::endgroup::\n" {
		t.Errorf("text of step Build: %d %q", code, body)
	}
	if code, body := get("format=lines&from_line=4", nil); code != 200 || strings.Count(body, "\n") != 2 || !strings.Contains(body, `"line":5`) {
		t.Errorf("lines from 4: %d %q", code, body)
	}
	code, body := get("format=sse", http.Header{"Last-Event-Id": {"3"}})
	if code != 200 || !strings.HasPrefix(body, "id: 4\ndata: {") || !strings.Contains(body, "id: 5\n") || strings.Contains(body, "id: 3\n") {
		t.Errorf("events after 3: %d %q", code, body)
	}
	if code, _ := get("", nil); code != 200 {
		t.Errorf("raw: %d", code)
	}
	for _, q := range []string{"from_line=0", "from_line=x", "format=xml", "format=ndjson&step=Build", "after=1.2&from_line=3", "step=" + strings.Repeat("s", 300)} {
		if code, body := get(q, nil); code != 400 {
			t.Errorf("%s: %d %s, want 400", q, code, body)
		}
	}
	if code, _ := get("format=sse", http.Header{"Last-Event-Id": {"nope"}}); code != 400 {
		t.Errorf("a bad Last-Event-ID: %d, want 400", code)
	}
}

// Search across jobs through the API: every role of an org may search
// (logs.read), and sees only its org's lines whatever it asks; the
// caller's mistakes are 400s that say what is wrong.
func TestSearchLogsMatrix(t *testing.T) {
	w := newWorld(t)
	w.leaseAndLog(t, "a", "org a: error: connect timeout\n")
	w.leaseAndLog(t, "b", "org b: error: read timeout\n")
	for _, org := range []string{"a", "b"} {
		other := map[string]string{"a": "b", "b": "a"}[org]
		for role, c := range w.tokens[org] {
			for _, q := range []apiclient.LogSearchQuery{
				{Pattern: `error: .*timeout`},
				{Pattern: `.`, Job: w.job[other]},
				{Pattern: `org ` + other},
			} {
				res, err := c.SearchLogs(context.Background(), q)
				if err != nil {
					t.Errorf("search by %s/%s: %v", org, role, err)
					continue
				}
				for _, l := range res.Lines {
					if l.Job != w.job[org] || !strings.HasPrefix(l.Text, "org "+org) {
						t.Errorf("search %q by %s/%s found %+v", q.Pattern, org, role, l)
					}
				}
				for _, j := range res.Jobs {
					if j.Job != w.job[org] {
						t.Errorf("search %q by %s/%s counts job %s", q.Pattern, org, role, j.Job)
					}
				}
			}
			res, err := c.SearchLogs(context.Background(), apiclient.LogSearchQuery{Pattern: `timeout`, Since: "1h"})
			if err != nil || len(res.Lines) != 1 || res.Lines[0].Job != w.job[org] || len(res.Jobs) != 1 || res.Jobs[0].Matches != 1 {
				t.Errorf("own search by %s/%s: %+v, %v", org, role, res, err)
			}
		}
	}
	if got := status(t, w.h.Client(""), "GET", "/api/v1/logs/search?q=x", nil); got != http.StatusUnauthorized {
		t.Errorf("without a token: %d", got)
	}
	if got := status(t, w.agentC["a"], "GET", "/api/v1/logs/search?q=x", nil); got != http.StatusForbidden {
		t.Errorf("with an agent credential: %d", got)
	}
	viewer := w.tokens["a"][auth.RoleViewer]
	for _, q := range []url.Values{
		{},
		{"q": {"("}},
		{"q": {strings.Repeat("a", 8<<10)}},
		{"q": {"x"}, "since": {"1000d"}},
		{"q": {"x"}, "since": {"yesterday"}},
		{"q": {"x"}, "since": {"1h"}, "until": {"2h"}},
		{"q": {"x"}, "limit": {"0"}},
		{"q": {"x"}, "limit": {"100000"}},
		{"q": {"x"}, "repo": {strings.Repeat("r", 1000)}},
	} {
		resp, err := viewer.Raw(context.Background(), "GET", "/api/v1/logs/search?"+q.Encode(), nil)
		var e *apiclient.Error
		if !asAPIError(err, &e) || e.Status != http.StatusBadRequest || e.Message == "" {
			t.Errorf("search %.60v: %v %v, want 400 with a message", q, resp, err)
		}
	}
	// A 100 KB query does not fit the server's header bound at all.
	if got := status(t, viewer, "GET", "/api/v1/logs/search?q="+strings.Repeat("a", 100<<10), nil); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 100 KB query: %d, want 431", got)
	}
	// Strings that are syntax somewhere (SQL, LIKE, GLOB, ClickHouse) are
	// data here.
	for _, p := range []string{`' OR '1'='1`, `%`, `_`, `\*`, `'\); DROP TABLE log_lines; --`, `\x00`, `.*\\'.*`} {
		if _, err := viewer.SearchLogs(context.Background(), apiclient.LogSearchQuery{Pattern: p}); err != nil {
			t.Errorf("search %q: %v", p, err)
		}
	}
	res, err := viewer.SearchLogs(context.Background(), apiclient.LogSearchQuery{Pattern: `timeout`})
	if err != nil || len(res.Lines) != 1 {
		t.Errorf("search after the hostile ones: %+v, %v", res, err)
	}
}

// The raw output and lines of another org's job are not found, in any
// format.
func TestJobLogLinesOtherOrg(t *testing.T) {
	w := newWorld(t)
	w.leaseAndLog(t, "a", "secret of a\n")
	for _, f := range []string{"text", "ndjson", "lines", "sse"} {
		resp, err := w.tokens["b"][auth.RoleAdmin].Raw(context.Background(), "GET", "/api/v1/jobs/"+w.job["a"]+"/logs?format="+f, nil)
		if !apiclient.IsStatus(err, http.StatusNotFound) {
			t.Errorf("format %s of org a's job by org b: %v %v, want 404", f, resp, err)
		}
	}
	resp, err := w.tokens["a"][auth.RoleViewer].Raw(context.Background(), "GET", "/api/v1/jobs/"+w.job["a"]+"/logs?format=lines", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var l apiv1.LogLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Text != "secret of a" {
			t.Errorf("line %q: %v", sc.Text(), err)
		}
	}
}
