package dashboard

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/store"
)

// Insights are computed from the org's newest finished jobs: at most
// insightJobs of them, from the last insightWindow.
const (
	insightJobs   = 2000
	insightWindow = 7 * 24 * time.Hour
)

// labelStats is one label set's queue and run times and outcomes.
type labelStats struct {
	Labels              string
	Jobs                int
	Succeeded, Failed   int
	QueueP50, QueueP90  time.Duration
	RunP50, RunP90      time.Duration
	FailureRate         float64
	queueTimes, runTime []time.Duration
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

func (s *Server) insights(ctx context.Context, org string) (insightsData, error) {
	now := s.Now()
	d := insightsData{Since: now.Add(-insightWindow)}
	byLabels := map[string]*labelStats{}
	outcomes := map[flakyKey]*flaky{}
	before := ""
	for d.Jobs < insightJobs {
		batch, err := s.Jobs.List(ctx, store.JobFilter{OrgID: org, Before: before, Limit: scanBatch})
		if err != nil {
			return d, err
		}
		for _, j := range batch {
			before = j.ID
			if j.CreatedAt.Before(d.Since) {
				return finishInsights(d, byLabels, outcomes), nil
			}
			if !j.State.Terminal() {
				continue
			}
			d.Jobs++
			l := strings.Join(j.Labels, ",")
			if l == "" {
				l = "(no labels)"
			}
			st := byLabels[l]
			if st == nil {
				st = &labelStats{Labels: l}
				byLabels[l] = st
			}
			st.Jobs++
			switch j.State {
			case store.JobSucceeded:
				st.Succeeded++
			case store.JobFailed:
				st.Failed++
			}
			if !j.StartedAt.IsZero() {
				ready := j.CreatedAt
				if j.NotBefore.After(ready) {
					ready = j.NotBefore
				}
				st.queueTimes = append(st.queueTimes, max(j.StartedAt.Sub(ready), 0))
				if !j.FinishedAt.IsZero() {
					st.runTime = append(st.runTime, j.FinishedAt.Sub(j.StartedAt))
				}
			}
			if gh := j.GitHub; gh != nil && (j.State == store.JobSucceeded || j.State == store.JobFailed) {
				k := flakyKey{gh.Repo, gh.WorkflowName, gh.Name, gh.HeadSHA}
				f := outcomes[k]
				if f == nil {
					f = &flaky{What: gh.Repo + " · " + gh.WorkflowName + " · " + gh.Name, Commit: gh.HeadSHA, Last: j.ID}
					outcomes[k] = f
				}
				if j.State == store.JobFailed {
					f.Failed++
				} else {
					f.Succeeded++
				}
			} else if j.State == store.JobSucceeded && j.Attempt > 0 {
				outcomes[flakyKey{repo: j.ID}] = &flaky{What: jobTitle(j) + " (passed after an expired lease)", Failed: j.Attempt, Succeeded: 1, Last: j.ID}
			}
			if d.Jobs >= insightJobs {
				d.Capped = true
				break
			}
		}
		if len(batch) < scanBatch {
			break
		}
	}
	return finishInsights(d, byLabels, outcomes), nil
}

type flakyKey struct{ repo, workflow, name, sha string }

func finishInsights(d insightsData, byLabels map[string]*labelStats, outcomes map[flakyKey]*flaky) insightsData {
	for _, st := range byLabels {
		st.QueueP50, st.QueueP90 = percentile(st.queueTimes, 50), percentile(st.queueTimes, 90)
		st.RunP50, st.RunP90 = percentile(st.runTime, 50), percentile(st.runTime, 90)
		if n := st.Succeeded + st.Failed; n > 0 {
			st.FailureRate = float64(st.Failed) / float64(n)
		}
		d.Labels = append(d.Labels, st)
	}
	sort.Slice(d.Labels, func(i, j int) bool { return d.Labels[i].Jobs > d.Labels[j].Jobs })
	for _, f := range outcomes {
		if f.Failed > 0 && f.Succeeded > 0 {
			d.Flaky = append(d.Flaky, *f)
		}
	}
	sort.Slice(d.Flaky, func(i, j int) bool { return d.Flaky[i].Failed > d.Flaky[j].Failed })
	if len(d.Flaky) > 50 {
		d.Flaky = d.Flaky[:50]
	}
	return d
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, (len(s)*p)/100)]
}

func (s *Server) insightsPage(w http.ResponseWriter, r *http.Request, c *call) error {
	d, err := s.insights(r.Context(), c.Session.Org)
	if err != nil {
		return err
	}
	return s.render(w, r, c, http.StatusOK, "insights", "Insights", "insights", d)
}
