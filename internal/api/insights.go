package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/auth"
	"github.com/nimbus-build/nimbus/internal/insights"
)

// defaultFailingLines is how many failing lines a flaky job shows when
// the request does not say.
const defaultFailingLines = 10

// getInsights reports the org's queue and run times, failure rates and
// flaky jobs.
func (s *Server) getInsights(w http.ResponseWriter, r *http.Request, p auth.Principal) error {
	q := r.URL.Query()
	now := s.Now()
	since, err := parseSince("since", q.Get("since"), now)
	if err != nil {
		return err
	}
	until, err := parseSince("until", q.Get("until"), now)
	if err != nil {
		return err
	}
	ip := insights.Params{Repo: q.Get("repo"), Since: since, Until: until, FailingLines: defaultFailingLines}
	if v := q.Get("jobs"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > insights.MaxJobs {
			return badRequest("jobs: 1-%d", insights.MaxJobs)
		}
		ip.Jobs = n
	}
	if v := q.Get("lines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > insights.MaxFailingLines {
			return badRequest("lines: 0-%d", insights.MaxFailingLines)
		}
		ip.FailingLines = n
	}
	rep, err := s.insights.Report(r.Context(), p.Org, ip)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, insightsJSON(rep))
	return nil
}

func insightsJSON(r insights.Report) apiv1.Insights {
	out := apiv1.Insights{Since: r.Since.UTC(), Until: r.Until.UTC(), Repo: r.Repo, Jobs: r.Jobs, Capped: r.Capped,
		Groups: groupsJSON(r.Groups), Labels: groupsJSON(r.Labels), Flaky: []apiv1.FlakyJob{}}
	for _, f := range r.Flaky {
		fj := apiv1.FlakyJob{Repo: f.Repo, Workflow: f.Workflow, Name: f.Name, HeadSHA: f.HeadSHA, ExpiredLease: f.ExpiredLease,
			Failed: f.Failed, Succeeded: f.Succeeded, FailedJob: f.FailedJob, PassedJob: f.PassedJob}
		for _, l := range f.Lines {
			fj.Lines = append(fj.Lines, lineJSON(l))
		}
		out.Flaky = append(out.Flaky, fj)
	}
	return out
}

func groupsJSON(gs []insights.Group) []apiv1.InsightsGroup {
	out := make([]apiv1.InsightsGroup, 0, len(gs))
	for _, g := range gs {
		ig := apiv1.InsightsGroup{Repo: g.Repo, Workflow: g.Workflow, Name: g.Name, Labels: g.Labels,
			Jobs: g.Jobs, Succeeded: g.Succeeded, Failed: g.Failed, Cancelled: g.Cancelled, FailureRate: g.FailureRate,
			QueueP50: g.QueueP50.Seconds(), QueueP90: g.QueueP90.Seconds(), RunP50: g.RunP50.Seconds(), RunP90: g.RunP90.Seconds(),
			Days: make([]apiv1.InsightsDay, 0, len(g.Days))}
		for _, d := range g.Days {
			ig.Days = append(ig.Days, apiv1.InsightsDay{Day: d.Day.Format(time.DateOnly), Jobs: d.Jobs, Succeeded: d.Succeeded, Failed: d.Failed, Cancelled: d.Cancelled})
		}
		out = append(out, ig)
	}
	return out
}
