package apiv1

import "time"

// Insights answers GET /api/v1/insights: what the org's jobs created in
// [since, until) that have finished say. Durations are in seconds.
type Insights struct {
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	Repo  string    `json:"repo,omitempty"`
	// Jobs is how many finished jobs were counted; Capped: a bound on the
	// jobs counted or examined was reached, so the numbers are of the
	// newest jobs only (narrow the range or the repository).
	Jobs   int  `json:"jobs"`
	Capped bool `json:"capped,omitempty"`
	// Groups are per repository, workflow, job name and label set, most
	// jobs first (jobs submitted through the API have no repository,
	// workflow or name).
	Groups []InsightsGroup `json:"groups"`
	// Labels are per label set alone.
	Labels []InsightsGroup `json:"labels"`
	Flaky  []FlakyJob      `json:"flaky"`
}

// InsightsGroup is the numbers of one group of finished jobs.
type InsightsGroup struct {
	Repo     string `json:"repo,omitempty"`
	Workflow string `json:"workflow,omitempty"`
	Name     string `json:"name,omitempty"`
	// Labels is the label set, sorted and comma-joined.
	Labels    string `json:"labels"`
	Jobs      int    `json:"jobs"`
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
	Cancelled int    `json:"cancelled"`
	// FailureRate is failed / (succeeded + failed).
	FailureRate float64 `json:"failure_rate"`
	// Queue: from the webhook or submission (or the job's not-before
	// time) to its start; run: from its start to its end.
	QueueP50 float64       `json:"queue_p50_seconds"`
	QueueP90 float64       `json:"queue_p90_seconds"`
	RunP50   float64       `json:"run_p50_seconds"`
	RunP90   float64       `json:"run_p90_seconds"`
	Days     []InsightsDay `json:"days"`
}

// InsightsDay is a group's jobs created on one UTC day.
type InsightsDay struct {
	Day       string `json:"day"` // 2006-01-02
	Jobs      int    `json:"jobs"`
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
	Cancelled int    `json:"cancelled"`
}

// FlakyJob is the same GitHub job on the same commit that failed and
// passed (a re-run), or a job that passed after a lease of it expired.
type FlakyJob struct {
	Repo         string `json:"repo,omitempty"`
	Workflow     string `json:"workflow,omitempty"`
	Name         string `json:"name,omitempty"`
	HeadSHA      string `json:"head_sha,omitempty"`
	ExpiredLease bool   `json:"expired_lease,omitempty"`
	Failed       int    `json:"failed"`
	Succeeded    int    `json:"succeeded"`
	// FailedJob and PassedJob are the newest job of each outcome.
	FailedJob string `json:"failed_job"`
	PassedJob string `json:"passed_job"`
	// Lines are the failed job's last lines that look like errors (or
	// its last lines when none does).
	Lines []LogLine `json:"lines,omitempty"`
}
