package dashboard_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
)

// The search page finds a line of a job's log (colours dropped, linked to
// the line), says when nothing matches, refuses a bad pattern with a 400
// page, and never shows another org's lines.
func TestSearchPage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	j, err := e.h.Owner().SubmitJob(ctx, apiv1.SubmitJob{Argv: []string{"make"}, Labels: []string{"linux"}})
	if err != nil {
		t.Fatal(err)
	}
	p := &agentPlayer{t: t, e: e, job: j.ID}
	if err := p.lease(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.log(ctx, "1"); err != nil {
		t.Fatal(err)
	}
	if err := p.log(ctx, "2"); err != nil {
		t.Fatal(err)
	}
	as := func(org string, role auth.Role) *browser {
		b := e.browser()
		b.Jar.SetCookies(mustURL(e.h.URL), []*http.Cookie{e.sessionAs(org, role)})
		return b
	}
	viewer, other := as(e.orgA, auth.RoleViewer), as(e.orgB, auth.RoleAdmin)
	search := func(b *browser, q string) (*http.Response, string) {
		return b.get("/ui/search?" + url.Values{"q": {q}, "since": {"1h"}}.Encode())
	}
	// The lines are written by the ingest pipeline: poll until they show.
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; {
		var resp *http.Response
		resp, body = search(viewer, `needle-in-the-\w+`)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("search: %d %.500s", resp.StatusCode, body)
		}
		if strings.Contains(body, `data-testid="search-line"`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{"found the needle-in-the-log here", `href="/ui/jobs/` + j.ID + `#L`, `href="/ui/jobs/` + j.ID + `"`} {
		if !strings.Contains(body, want) {
			t.Errorf("search page lacks %q: %.2000s", want, body)
		}
	}
	// Colours are dropped: the line reads as text.
	if _, body := search(viewer, "PASS"); !strings.Contains(body, "PASS internal/jobs") || strings.Contains(body, "\x1b") {
		t.Errorf("a coloured line: %.2000s", body)
	}
	if _, body := search(viewer, "no-such-line-anywhere"); !strings.Contains(body, `data-testid="search-none"`) {
		t.Errorf("no match: %.2000s", body)
	}
	if resp, body := search(viewer, "(unclosed"); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "missing closing )") {
		t.Errorf("a bad pattern: %d %.1000s", resp.StatusCode, body)
	}
	if resp, _ := viewer.get("/ui/search?q=x&since=9y"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a bad range: %d", resp.StatusCode)
	}
	// Another org's admin finds nothing of org a's.
	if _, body := search(other, "needle"); strings.Contains(body, "needle-in-the-log") || strings.Contains(body, j.ID) {
		t.Errorf("org b sees org a's lines: %.2000s", body)
	}
}
