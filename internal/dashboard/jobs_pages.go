package dashboard

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Bounds of the jobs list: a page shows pageSize jobs; filters the
// database cannot apply look at no more than scanBudget jobs per page (a
// page then ends early and offers the next).
const (
	pageSize   = 50
	scanBatch  = 500
	scanBudget = 2000
	// liveJobsMax bounds the live jobs read to count busy slots.
	liveJobsMax = 1000
)

// jobFilter is the jobs list's query.
type jobFilter struct {
	State  store.JobState
	Repo   string
	Label  string
	Agent  string
	Before string
}

func parseJobFilter(q url.Values) (jobFilter, error) {
	f := jobFilter{State: store.JobState(q.Get("state")), Repo: strings.TrimSpace(q.Get("repo")),
		Label: strings.TrimSpace(q.Get("label")), Agent: strings.TrimSpace(q.Get("agent")), Before: q.Get("before")}
	switch {
	case f.State != "" && !f.State.Valid():
		return f, badRequest("state: %q is not a job state", f.State)
	case f.Before != "" && !ids.Valid("job", f.Before):
		return f, badRequest("before: %q is not a job id", f.Before)
	case len(f.Repo) > 200 || len(f.Label) > 200 || len(f.Agent) > 200:
		return f, badRequest("filters: at most 200 characters each")
	}
	return f, nil
}

// query is f as URL parameters (without the page cursor).
func (f jobFilter) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"state": string(f.State), "repo": f.Repo, "label": f.Label, "agent": f.Agent} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func (f jobFilter) match(j store.Job, agentName func(string) string) bool {
	if f.Label != "" && !slices.Contains(j.Labels, f.Label) {
		return false
	}
	if f.Repo != "" && (j.GitHub == nil || !strings.EqualFold(j.GitHub.Repo, f.Repo)) {
		return false
	}
	if f.Agent != "" && j.AgentID != f.Agent && !strings.EqualFold(agentName(j.AgentID), f.Agent) {
		return false
	}
	return true
}

// listJobs returns a page of org's jobs matching f, newest first, and
// the cursor of the next page ("" at the end). It reads at most
// scanBudget jobs.
func (s *Server) listJobs(ctx context.Context, org string, f jobFilter, agentName func(string) string) ([]store.Job, string, error) {
	var out []store.Job
	before := f.Before
	for scanned := 0; scanned < scanBudget; {
		batch, err := s.Jobs.List(ctx, store.JobFilter{OrgID: org, State: f.State, Before: before, Limit: scanBatch})
		if err != nil {
			return nil, "", err
		}
		for _, j := range batch {
			scanned++
			before = j.ID
			if f.match(j, agentName) {
				out = append(out, j)
				if len(out) == pageSize {
					return out, j.ID, nil
				}
			}
		}
		if len(batch) < scanBatch {
			return out, "", nil
		}
	}
	return out, before, nil
}

// fleet reads the org's agents and how many live jobs each holds.
func (s *Server) fleetView(ctx context.Context, org string) (fleetView, error) {
	fv := fleetView{busy: map[string]int{}}
	if s.Fleet != nil {
		var err error
		if fv.agents, err = s.Fleet.List(ctx, org); err != nil {
			return fv, err
		}
	}
	for _, st := range []store.JobState{store.JobLeased, store.JobRunning} {
		live, err := s.Jobs.List(ctx, store.JobFilter{OrgID: org, State: st, Limit: liveJobsMax})
		if err != nil {
			return fv, err
		}
		for _, j := range live {
			fv.busy[j.AgentID]++
		}
	}
	return fv, nil
}

func (fv fleetView) name(id string) string {
	for _, a := range fv.agents {
		if a.ID == id {
			return a.Name
		}
	}
	return ""
}

// jobRow is a job as the list shows it.
type jobRow struct {
	Job   store.Job
	Title string
	Agent string
	Wait  WaitReason
	Took  time.Duration
}

func jobTitle(j store.Job) string {
	if gh := j.GitHub; gh != nil {
		t := gh.Repo
		if gh.WorkflowName != "" {
			t += " · " + gh.WorkflowName
		}
		if gh.Name != "" {
			t += " · " + gh.Name
		}
		return t
	}
	t := strings.Join(j.Spec.Argv, " ")
	if len(t) > 120 {
		t = t[:120] + "…"
	}
	return t
}

func (s *Server) rows(list []store.Job, fv fleetView) []jobRow {
	now := s.Now()
	out := make([]jobRow, len(list))
	for i, j := range list {
		r := jobRow{Job: j, Title: jobTitle(j), Agent: fv.name(j.AgentID), Wait: whyWaits(j, fv, now)}
		switch {
		case !j.FinishedAt.IsZero() && !j.StartedAt.IsZero():
			r.Took = j.FinishedAt.Sub(j.StartedAt)
		case !j.StartedAt.IsZero():
			r.Took = now.Sub(j.StartedAt)
		}
		out[i] = r
	}
	return out
}

type jobsData struct {
	Filter jobFilter
	States []store.JobState
	Rows   []jobRow
	Next   string
	// Live: the page is the first of its filter, so it follows changes.
	Live      bool
	LiveQuery string
	Query     string
}

func (s *Server) jobsData(ctx context.Context, org string, f jobFilter) (jobsData, error) {
	fv, err := s.fleetView(ctx, org)
	if err != nil {
		return jobsData{}, err
	}
	list, next, err := s.listJobs(ctx, org, f, fv.name)
	if err != nil {
		return jobsData{}, err
	}
	q := f.query()
	return jobsData{Filter: f, States: store.JobStates, Rows: s.rows(list, fv), Next: next, Live: f.Before == "",
		LiveQuery: q.Encode(), Query: q.Encode()}, nil
}

func (s *Server) jobsPage(w http.ResponseWriter, r *http.Request, c *call) error {
	f, err := parseJobFilter(r.URL.Query())
	if err != nil {
		return err
	}
	d, err := s.jobsData(r.Context(), c.Session.Org, f)
	if err != nil {
		return err
	}
	return s.render(w, r, c, http.StatusOK, "jobs", "Jobs", "jobs", d)
}

// jobData is the job page.
type jobData struct {
	Row    jobRow
	Egress *apiv1.JobEgress
	Live   bool
	// Waited and Ran are the job's queue and run times so far.
	Waited, Ran time.Duration
	Env         []string
}

func (s *Server) jobData(ctx context.Context, c *call, id string) (jobData, error) {
	if !ids.Valid("job", id) {
		return jobData{}, notFound("job")
	}
	j, err := s.Jobs.Get(ctx, c.Session.Org, id)
	if err != nil {
		return jobData{}, err
	}
	fv, err := s.fleetView(ctx, c.Session.Org)
	if err != nil {
		return jobData{}, err
	}
	d := jobData{Row: s.rows([]store.Job{j}, fv)[0], Live: !j.State.Terminal()}
	now := s.Now()
	// The queue ends at the first lease (jobs stored before leases were
	// timed have only their start).
	switch {
	case !j.LeasedAt.IsZero():
		d.Waited = j.LeasedAt.Sub(j.CreatedAt)
	case !j.StartedAt.IsZero():
		d.Waited = j.StartedAt.Sub(j.CreatedAt)
	case j.State == store.JobQueued || j.State == store.JobLeased:
		d.Waited = now.Sub(j.CreatedAt)
	}
	d.Ran = d.Row.Took
	for k := range j.Spec.Env {
		d.Env = append(d.Env, k) // names only: values may be secrets
	}
	slices.Sort(d.Env)
	if s.Egress != nil {
		rec, err := s.Egress.Get(ctx, c.Session.Org, id)
		switch {
		case err == nil:
			d.Egress = &apiv1.JobEgress{Policy: rec.Policy, Report: rec.Report}
		case !errors.Is(err, store.ErrNotFound):
			return jobData{}, err
		}
	}
	return d, nil
}

func (s *Server) jobPage(w http.ResponseWriter, r *http.Request, c *call) error {
	d, err := s.jobData(r.Context(), c, r.PathValue("id"))
	if err != nil {
		return err
	}
	return s.render(w, r, c, http.StatusOK, "job", shortID(d.Row.Job.ID)+" · "+d.Row.Title, "jobs", d)
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request, c *call) error {
	id := r.PathValue("id")
	if !ids.Valid("job", id) {
		return notFound("job")
	}
	if _, err := s.Jobs.Cancel(r.Context(), c.Session.Org, id, audit.Actor(c.Principal)); err != nil {
		return err
	}
	http.Redirect(w, r, "/ui/jobs/"+id, http.StatusSeeOther)
	return nil
}
