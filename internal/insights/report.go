package insights

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/logs"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Report is what an org's finished jobs of a time range say.
type Report struct {
	Since, Until time.Time
	Repo         string
	// Jobs is how many finished jobs were counted; Capped says that the
	// bound on jobs (counted or examined) was reached first: the report
	// is of the newest ones only.
	Jobs   int
	Capped bool
	// Groups are per repository, workflow, job name and label set (jobs
	// submitted through the API have no repository, workflow or name),
	// most jobs first; at most maxGroups.
	Groups []Group
	// Labels are per label set alone, most jobs first.
	Labels []Group
	// Flaky are the flaky jobs, most failures first; at most maxFlaky.
	Flaky []Flaky
}

// Group is the numbers of one group of jobs.
type Group struct {
	Repo, Workflow, Name string
	// Labels is the label set, sorted and comma-joined ("" for none).
	Labels string
	Stats
}

// Stats are the numbers of a group of finished jobs.
type Stats struct {
	Jobs, Succeeded, Failed, Cancelled int
	// FailureRate is Failed / (Succeeded + Failed): cancelled jobs
	// count for neither.
	FailureRate float64
	// Queue is from creation (the webhook, the submission) or the job's
	// not-before time to its first start; Run from its start to its end.
	// Jobs that never started count for neither.
	QueueP50, QueueP90 time.Duration
	RunP50, RunP90     time.Duration
	// Days are the jobs by the UTC day they were created, oldest first
	// (days without jobs left out).
	Days []Day

	queue, run []time.Duration
}

// Day is one day of a group.
type Day struct {
	Day                                time.Time
	Jobs, Succeeded, Failed, Cancelled int
}

// Flaky is a job that failed and passed on the same commit: the same
// GitHub job (repository, workflow, job name, head SHA) that failed and
// passed in different runs (a re-run), or a job that passed after a lease
// of it expired (ExpiredLease; its agent was lost).
type Flaky struct {
	Repo, Workflow, Name, HeadSHA string
	ExpiredLease                  bool
	// Failed and Succeeded count the runs of each outcome (for an
	// expired lease: the expired attempts and the one that passed).
	Failed, Succeeded int
	// FailedJob and PassedJob are the newest job of each outcome.
	FailedJob, PassedJob string
	// Lines are the failing lines of FailedJob: its last lines that
	// look like errors, or its last lines when none does.
	Lines []logs.Line
}

type groupKey struct{ repo, workflow, name, labels string }

type flakyKey struct{ repo, workflow, name, sha string }

// Report computes org's report.
func (s *Service) Report(ctx context.Context, org string, p Params) (Report, error) {
	p, err := s.check(org, p)
	if err != nil {
		return Report{}, err
	}
	r := Report{Since: p.Since, Until: p.Until, Repo: p.Repo}
	groups := map[groupKey]*Group{}
	labels := map[string]*Group{}
	flaky := map[flakyKey]*Flaky{}
	var order []flakyKey // first seen (newest) first
	scanned, before := 0, ""
scan:
	for {
		batch, err := s.jobs.List(ctx, store.JobFilter{OrgID: org, Before: before, Limit: scanBatch})
		if err != nil {
			return Report{}, err
		}
		for _, j := range batch {
			before = j.ID
			if j.OrgID != org { // the store scopes the list; never trust one row
				continue
			}
			if j.CreatedAt.Before(p.Since) {
				break scan
			}
			if scanned++; scanned > maxScan {
				r.Capped = true
				break scan
			}
			if !j.State.Terminal() || !j.CreatedAt.Before(p.Until) {
				continue
			}
			gh := j.GitHub
			if p.Repo != "" && (gh == nil || !strings.EqualFold(gh.Repo, p.Repo)) {
				continue
			}
			if r.Jobs >= p.Jobs {
				r.Capped = true
				break scan
			}
			r.Jobs++
			ls := labelSet(j.Labels)
			k := groupKey{labels: ls}
			if gh != nil {
				k.repo, k.workflow, k.name = gh.Repo, gh.WorkflowName, gh.Name
			}
			g := groups[k]
			if g == nil {
				g = &Group{Repo: k.repo, Workflow: k.workflow, Name: k.name, Labels: ls}
				groups[k] = g
			}
			g.add(j)
			l := labels[ls]
			if l == nil {
				l = &Group{Labels: ls}
				labels[ls] = l
			}
			l.add(j)
			if fk, f := flakyOf(j); f != nil {
				cur := flaky[fk]
				if cur == nil {
					flaky[fk], order = f, append(order, fk)
					continue
				}
				cur.Failed += f.Failed
				cur.Succeeded += f.Succeeded
				cur.FailedJob = cmp.Or(cur.FailedJob, f.FailedJob)
				cur.PassedJob = cmp.Or(cur.PassedJob, f.PassedJob)
			}
		}
		if len(batch) < scanBatch {
			break
		}
	}
	r.Groups = finish(groups, maxGroups)
	r.Labels = finish(labels, maxGroups)
	for _, k := range order {
		if f := flaky[k]; f.Failed > 0 && f.Succeeded > 0 {
			r.Flaky = append(r.Flaky, *f)
		}
	}
	slices.SortStableFunc(r.Flaky, func(a, b Flaky) int { return b.Failed - a.Failed })
	r.Flaky = r.Flaky[:min(len(r.Flaky), maxFlaky)]
	if p.FailingLines > 0 && s.lines != nil {
		for i := range r.Flaky[:min(len(r.Flaky), maxWithLines)] {
			f := &r.Flaky[i]
			if f.ExpiredLease {
				continue
			}
			f.Lines, err = s.failingLines(ctx, org, f.FailedJob, p.FailingLines)
			if err != nil {
				return Report{}, err
			}
		}
	}
	return r, nil
}

// flakyOf is what j says about flakiness: for a GitHub job that passed
// or failed, one run of its (repository, workflow, name, commit); for
// another job that passed after an expired lease, a flaky job of its own.
func flakyOf(j store.Job) (flakyKey, *Flaky) {
	gh := j.GitHub
	switch {
	case gh != nil && j.State == store.JobFailed:
		return flakyKey{gh.Repo, gh.WorkflowName, gh.Name, gh.HeadSHA},
			&Flaky{Repo: gh.Repo, Workflow: gh.WorkflowName, Name: gh.Name, HeadSHA: gh.HeadSHA, Failed: 1, FailedJob: j.ID}
	case gh != nil && j.State == store.JobSucceeded:
		return flakyKey{gh.Repo, gh.WorkflowName, gh.Name, gh.HeadSHA},
			&Flaky{Repo: gh.Repo, Workflow: gh.WorkflowName, Name: gh.Name, HeadSHA: gh.HeadSHA, Succeeded: 1, PassedJob: j.ID}
	case gh == nil && j.State == store.JobSucceeded && j.Attempt > 0:
		return flakyKey{repo: "\x00" + j.ID}, &Flaky{Name: strings.Join(j.Spec.Argv, " "), ExpiredLease: true,
			Failed: j.Attempt, Succeeded: 1, FailedJob: j.ID, PassedJob: j.ID}
	}
	return flakyKey{}, nil
}

func (g *Group) add(j store.Job) {
	g.Jobs++
	day := j.CreatedAt.UTC().Truncate(24 * time.Hour)
	if n := len(g.Days); n == 0 || !g.Days[n-1].Day.Equal(day) {
		g.Days = append(g.Days, Day{Day: day})
	}
	d := &g.Days[len(g.Days)-1]
	d.Jobs++
	switch j.State {
	case store.JobSucceeded:
		g.Succeeded++
		d.Succeeded++
	case store.JobFailed:
		g.Failed++
		d.Failed++
	case store.JobCancelled:
		g.Cancelled++
		d.Cancelled++
	}
	if j.StartedAt.IsZero() {
		return
	}
	ready := j.CreatedAt
	if j.NotBefore.After(ready) {
		ready = j.NotBefore
	}
	// The queue ends at the first lease (jobs stored before leases were
	// timed have only their start).
	dequeued := j.LeasedAt
	if dequeued.IsZero() {
		dequeued = j.StartedAt
	}
	g.queue = append(g.queue, max(dequeued.Sub(ready), 0))
	if !j.FinishedAt.IsZero() {
		g.run = append(g.run, max(j.FinishedAt.Sub(j.StartedAt), 0))
	}
}

// finish computes the groups' percentiles and rates and lists at most
// max of them, most jobs first.
func finish[K comparable](m map[K]*Group, max int) []Group {
	out := make([]Group, 0, len(m))
	for _, g := range m {
		g.QueueP50, g.QueueP90 = percentile(g.queue, 50), percentile(g.queue, 90)
		g.RunP50, g.RunP90 = percentile(g.run, 50), percentile(g.run, 90)
		if n := g.Succeeded + g.Failed; n > 0 {
			g.FailureRate = float64(g.Failed) / float64(n)
		}
		g.queue, g.run = nil, nil
		slices.Reverse(g.Days) // scanned newest first
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b Group) int {
		return cmp.Or(b.Jobs-a.Jobs, strings.Compare(a.Repo, b.Repo), strings.Compare(a.Workflow, b.Workflow),
			strings.Compare(a.Name, b.Name), strings.Compare(a.Labels, b.Labels))
	})
	return out[:min(len(out), max)]
}

// percentile is the p-th percentile of ds (nearest rank), 0 for none.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// labelSet is labels sorted and comma-joined.
func labelSet(labels []string) string {
	s := slices.Clone(labels)
	slices.Sort(s)
	return strings.Join(slices.Compact(s), ",")
}
