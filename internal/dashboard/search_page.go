package dashboard

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/logs"
)

// searchLimit is how many matching lines the search page shows.
const searchLimit = 200

// searchRanges are the search page's time ranges (the API takes any).
var searchRanges = []struct{ Value, Label string }{{"1h", "last hour"}, {"24h", "last day"}, {"168h", "last 7 days"}}

type searchLine struct {
	Line logs.Line
	Text string // without ANSI escapes
}

type searchData struct {
	Q, Repo, Since string
	Ranges         []struct{ Value, Label string }
	Searched       bool
	Lines          []searchLine
	Jobs           []logs.JobCount
	Partial        bool
	Limit          int
}

// ansiEscape matches the escape sequences a terminal interprets (colours,
// cursor moves), which the search page drops.
var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)`)

// searchPage searches the lines of the org's jobs (an RE2 pattern, a
// repository, a range), as `nimbus ctl logs search` and the API do.
func (s *Server) searchPage(w http.ResponseWriter, r *http.Request, c *call) error {
	q := r.URL.Query()
	d := searchData{Q: q.Get("q"), Repo: q.Get("repo"), Since: q.Get("since"), Ranges: searchRanges, Limit: searchLimit}
	if d.Since == "" {
		d.Since = "24h"
	}
	var since time.Duration
	for _, rg := range searchRanges {
		if rg.Value == d.Since {
			since, _ = time.ParseDuration(rg.Value)
		}
	}
	if since == 0 {
		return badRequest("since: one of 1h, 24h, 168h")
	}
	if d.Q == "" {
		return s.render(w, r, c, http.StatusOK, "search", "Search", "search", d)
	}
	d.Searched = true
	res, err := s.Logs.Search(r.Context(), c.Session.Org, logs.SearchParams{Pattern: d.Q, Repo: d.Repo,
		Since: time.Now().Add(-since), Limit: searchLimit})
	switch {
	case errors.Is(err, logs.ErrInvalid):
		return badRequest("%s", strings.TrimPrefix(err.Error(), "invalid log search: "))
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		return &pageError{status: http.StatusServiceUnavailable, title: "Too slow",
			msg: "The search took too long: narrow it (a shorter range, a repository, a longer literal)."}
	case err != nil:
		return err
	}
	d.Jobs, d.Partial = res.Jobs, res.Partial
	for _, l := range res.Lines {
		d.Lines = append(d.Lines, searchLine{Line: l, Text: ansiEscape.ReplaceAllString(l.Text, "")})
	}
	return s.render(w, r, c, http.StatusOK, "search", "Search", "search", d)
}
