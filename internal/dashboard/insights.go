package dashboard

import (
	"context"
	"net/http"
	"time"

	"github.com/nimbus-build/nimbus/internal/insights"
)

// labelStats is one label set's queue and run times and outcomes.
type labelStats struct {
	Labels             string
	Jobs               int
	Succeeded, Failed  int
	QueueP50, QueueP90 time.Duration
	RunP50, RunP90     time.Duration
	FailureRate        float64
}

// flaky is a GitHub job (repository, workflow, job, commit) that both
// failed and succeeded, or a job that passed after a lease expired.
type flaky struct {
	What      string
	Commit    string
	Failed    int
	Succeeded int
	Last      string // a job id
}

type insightsData struct {
	Since  time.Time
	Jobs   int
	Capped bool
	Labels []*labelStats
	Flaky  []flaky
}

// insights is the org's report of internal/insights (the API's too), over
// its default range and bounds, as the page shows it.
func (s *Server) insights(ctx context.Context, org string) (insightsData, error) {
	r, err := insights.New(s.Jobs, nil, s.Now, s.log).Report(ctx, org, insights.Params{})
	if err != nil {
		return insightsData{}, err
	}
	d := insightsData{Since: r.Since, Jobs: r.Jobs, Capped: r.Capped}
	for _, g := range r.Labels {
		l := g.Labels
		if l == "" {
			l = "(no labels)"
		}
		d.Labels = append(d.Labels, &labelStats{Labels: l, Jobs: g.Jobs, Succeeded: g.Succeeded, Failed: g.Failed,
			QueueP50: g.QueueP50, QueueP90: g.QueueP90, RunP50: g.RunP50, RunP90: g.RunP90, FailureRate: g.FailureRate})
	}
	for _, f := range r.Flaky {
		fl := flaky{What: f.Repo + " · " + f.Workflow + " · " + f.Name, Commit: f.HeadSHA, Failed: f.Failed, Succeeded: f.Succeeded,
			Last: max(f.FailedJob, f.PassedJob)} // job ids sort by creation
		if f.ExpiredLease {
			what := f.Name
			if len(what) > 120 {
				what = what[:120] + "…"
			}
			fl.What = what + " (passed after an expired lease)"
		}
		d.Flaky = append(d.Flaky, fl)
	}
	return d, nil
}

func (s *Server) insightsPage(w http.ResponseWriter, r *http.Request, c *call) error {
	d, err := s.insights(r.Context(), c.Session.Org)
	if err != nil {
		return err
	}
	return s.render(w, r, c, http.StatusOK, "insights", "Insights", "insights", d)
}
