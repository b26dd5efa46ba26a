package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
)

// event is one Server-Sent Event.
type event struct{ id, name, data string }

// stream opens a dashboard stream with a session and returns its events
// as they come.
func stream(t *testing.T, e *env, ctx context.Context, path string, c *http.Cookie, lastID string) <-chan event {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", e.h.URL+path, nil)
	req.AddCookie(c)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	ch := make(chan event, 100)
	go func() {
		defer resp.Body.Close()
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		var ev event
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" {
					ch <- ev
				}
				ev = event{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.name = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	return ch
}

func next(t *testing.T, ch <-chan event, name string) event {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("stream ended before a %q event", name)
			}
			if ev.name == name {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %q event", name)
		}
	}
}

func text(t *testing.T, ev event) string {
	t.Helper()
	var d struct {
		T    string `json:"t"`
		HTML string `json:"html"`
	}
	if err := json.Unmarshal([]byte(ev.data), &d); err != nil {
		t.Fatal(err)
	}
	return d.T + d.HTML
}

// The log stream tails a running job's output as it arrives (a character
// cut between two chunks arrives whole), resumes from its last event id,
// and ends when the job does; the list and the job's panel follow the
// job's state.
func TestLiveLogAndState(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	j, err := e.h.Owner().SubmitJob(ctx, apiv1.SubmitJob{Argv: []string{"x"}, Labels: []string{"linux"}})
	if err != nil {
		t.Fatal(err)
	}
	viewer := e.sessionAs(e.orgA, auth.RoleViewer)
	list := stream(t, e, ctx, "/ui/jobs/live", viewer, "")
	if rows := text(t, next(t, list, "rows")); !strings.Contains(rows, j.ID) || !strings.Contains(rows, `data-state="queued"`) {
		t.Fatalf("first rows: %.300s", rows)
	}
	panel := stream(t, e, ctx, "/ui/jobs/"+j.ID+"/live", viewer, "")
	if p := text(t, next(t, panel, "job")); !strings.Contains(p, "No agent of this org offers labels linux") {
		t.Errorf("queued panel does not say why it waits: %.500s", p)
	}
	logs := stream(t, e, ctx, "/ui/jobs/"+j.ID+"/log", viewer, "")

	p := &agentPlayer{t: t, e: e, job: j.ID}
	if err := p.lease(ctx); err != nil {
		t.Fatal(err)
	}
	if rows := text(t, next(t, list, "rows")); !strings.Contains(rows, `data-state="running"`) {
		t.Errorf("rows after the start: %.300s", rows)
	}
	if pn := text(t, next(t, panel, "job")); !strings.Contains(pn, `data-state="running"`) || !strings.Contains(pn, "<dt>Leased</dt>") ||
		!strings.Contains(pn, "<dt>Started</dt>") {
		t.Errorf("panel after the start (state, leased, started): %.1000s", pn)
	}
	for i, c := range [][]byte{[]byte("héllo\nwor"), []byte("ld \xc3"), []byte("\xa9t\xc3\xa9\n")} {
		if _, err := p.agent.AppendLogs(ctx, j.ID, apiv1.Logs{Fence: p.fence, Chunks: []apiv1.LogChunk{{Seq: int64(i), Data: c}}}); err != nil {
			t.Fatal(err)
		}
	}
	var got strings.Builder
	var last string
	for !strings.HasSuffix(got.String(), "\n") || strings.Count(got.String(), "\n") < 2 {
		ev := next(t, logs, "out")
		got.WriteString(text(t, ev))
		last = ev.id
	}
	if got.String() != "héllo\nworld été\n" {
		t.Errorf("log stream: %q", got.String())
	}
	// A reconnecting browser resumes after its last event.
	again := stream(t, e, ctx, "/ui/jobs/"+j.ID+"/log", viewer, last)
	if _, err := p.agent.AppendLogs(ctx, j.ID, apiv1.Logs{Fence: p.fence, Chunks: []apiv1.LogChunk{{Seq: 3, Data: []byte("more\n")}}}); err != nil {
		t.Fatal(err)
	}
	if s := text(t, next(t, again, "out")); s != "more\n" {
		t.Errorf("resumed stream: %q", s)
	}
	code := 0
	if _, err := p.agent.CompleteJob(ctx, j.ID, apiv1.Complete{Fence: p.fence, State: "succeeded", ExitCode: &code}); err != nil {
		t.Fatal(err)
	}
	next(t, logs, "end")
	next(t, panel, "end")
	if rows := text(t, next(t, list, "rows")); !strings.Contains(rows, `data-state="succeeded"`) {
		t.Errorf("rows after the end: %.300s", rows)
	}
	// The raw log, whole.
	b := e.browser()
	u := mustURL(e.h.URL)
	b.Jar.SetCookies(u, []*http.Cookie{viewer})
	resp, raw := b.get("/ui/jobs/" + j.ID + "/log.txt?download=1")
	if raw != "héllo\nworld été\nmore\n" || !strings.Contains(resp.Header.Get("Content-Disposition"), j.ID+".log") {
		t.Errorf("raw log %q (%s)", raw, resp.Header.Get("Content-Disposition"))
	}
}
