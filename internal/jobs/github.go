package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nimbus-build/nimbus/internal/audit"
	"github.com/nimbus-build/nimbus/internal/github"
	"github.com/nimbus-build/nimbus/internal/ids"
	"github.com/nimbus-build/nimbus/internal/store"
)

// Webhook outcomes.
const (
	WebhookCreated   = "created"
	WebhookUpdated   = "updated"
	WebhookDuplicate = "duplicate"
	WebhookIgnored   = "ignored"
)

// WebhookResult says what a delivery did.
type WebhookResult struct {
	Outcome string
	JobID   string
	Reason  string
}

// githubStatusRank orders GitHub's job statuses: a status only moves
// forward, however late or out of order the deliveries come.
var githubStatusRank = map[string]int{"queued": 0, "waiting": 0, "in_progress": 1, "completed": 2}

// IngestWorkflowJob applies a verified workflow_job delivery, once: the
// delivery id and the job key (repository, job, run attempt) make replays
// and redeliveries harmless, and the transitions tolerate any order:
//
//   - queued creates the job (when its labels match a pool and its owner
//     is a connected org); a late queued never resurrects a job that has
//     started or finished.
//   - in_progress records the runner that took the job. GitHub gives a
//     queued job to any idle runner with matching labels, so a job still
//     waiting for its own runner no longer needs one and is cancelled —
//     unless the runner that took it was Nimbus's runner for another job
//     still queued on GitHub, which then needs this job's runner instead.
//   - completed settles GitHub's side; a job whose runner never started is
//     cancelled.
//   - in_progress or completed for a job never seen queued records it as
//     already handled elsewhere.
func (s *Service) IngestWorkflowJob(ctx context.Context, d github.Delivery, ev github.WorkflowJobEvent) (WebhookResult, error) {
	now := s.now()
	var res WebhookResult
	var notifyOrg, changedOrg string
	err := s.audit.Do(ctx, func(r *audit.Tx) error {
		res, notifyOrg, changedOrg = WebhookResult{}, "", ""
		first, err := r.Deliveries().Record(ctx, store.Delivery{ID: d.ID, Event: d.Event, ReceivedAt: now})
		if err != nil {
			return err
		}
		if !first {
			res = WebhookResult{Outcome: WebhookDuplicate, Reason: "delivery " + d.ID + " was already processed"}
			return nil
		}
		org, err := r.Orgs().GetByGitHubOwner(ctx, ev.Repository.Owner.ID)
		if errors.Is(err, store.ErrNotFound) {
			res = WebhookResult{Outcome: WebhookIgnored, Reason: fmt.Sprintf("GitHub account %s (id %d) is not connected to a Nimbus org",
				ev.Repository.Owner.Login, ev.Repository.Owner.ID)}
			return nil
		}
		if err != nil {
			return err
		}
		changedOrg = org.ID
		key := "gh/" + ev.JobKey()
		cur, err := r.Jobs().GetForUpdate(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			res, err = s.createGitHubJob(ctx, r, org, key, ev, now)
			if res.Outcome == WebhookCreated && ev.Action == github.ActionQueued {
				notifyOrg = org.ID
			}
			return err
		}
		if err != nil {
			return err
		}
		res, err = s.updateGitHubJob(ctx, r, cur, ev, now)
		return err
	})
	if err != nil {
		return WebhookResult{}, err
	}
	if changedOrg != "" && (res.Outcome == WebhookCreated || res.Outcome == WebhookUpdated) {
		s.notify.Notify(OrgTopic(changedOrg))
	}
	if notifyOrg != "" {
		s.m.transitions.WithLabelValues(string(store.JobQueued)).Inc()
		s.notify.Notify(queueTopic(notifyOrg))
	}
	return res, nil
}

// ObserveWebhook counts a delivery's outcome in the metrics.
func (s *Service) ObserveWebhook(outcome string) { s.m.webhooks.WithLabelValues(outcome).Inc() }

// RejectWebhook records a delivery refused for its signature: it is
// counted in the metrics, and audited at a bounded rate so that a flood of
// forgeries cannot fill the database.
func (s *Service) RejectWebhook(ctx context.Context, delivery, reason, remote string) {
	s.ObserveWebhook("rejected")
	if s.rejectAudit.Allow() {
		s.audit.Record(ctx, store.AuditEntry{Actor: "github", Action: "webhook.rejected", Target: delivery,
			Detail: map[string]string{"reason": reason, "remote": remote}})
	}
}

func (s *Service) createGitHubJob(ctx context.Context, r *audit.Tx, org store.Org, key string, ev github.WorkflowJobEvent, now time.Time) (WebhookResult, error) {
	if ev.Action == github.ActionWaiting {
		return WebhookResult{Outcome: WebhookIgnored, Reason: "the job waits for an approval; a runner starts when it is queued"}, nil
	}
	labels, err := normalizeLabels(ev.Job.Labels)
	if err != nil || len(labels) == 0 || s.poolFor(labels) == "" {
		return WebhookResult{Outcome: WebhookIgnored, Reason: fmt.Sprintf("labels %v match no runner pool of this server", ev.Job.Labels)}, nil
	}
	gh := &store.GitHubJob{
		RepoID: ev.Repository.ID, Repo: ev.Repository.FullName, OwnerID: ev.Repository.Owner.ID,
		OwnerLogin: ev.Repository.Owner.Login, OwnerType: ev.Repository.Owner.Type, InstallationID: ev.InstallationID,
		JobID: ev.Job.ID, RunID: ev.Job.RunID, RunAttempt: int(ev.Job.RunAttempt), Name: ev.Job.Name,
		WorkflowName: ev.Job.WorkflowName, HeadSHA: ev.Job.HeadSHA, HeadBranch: ev.Job.HeadBranch, Status: "queued",
		DefaultBranch: ev.Repository.DefaultBranch,
	}
	mergeGitHub(gh, ev)
	j := store.Job{
		ID: ids.New("job"), OrgID: org.ID, Source: store.SourceGitHub, Key: key, State: store.JobQueued, Labels: labels,
		Spec: store.JobSpec{Timeout: s.cfg.DefaultTimeout}, MaxAttempts: s.cfg.MaxAttempts, CreatedBy: "github",
		CreatedAt: now, UpdatedAt: now, NotBefore: now, GitHub: gh,
	}
	switch ev.Action {
	case github.ActionQueued:
		j.NotBefore = s.limiter.notBefore(org.ID, now)
	case github.ActionInProgress:
		j.State, j.FinishedAt = store.JobCancelled, now
		j.Reason = fmt.Sprintf("GitHub gave the job to runner %s before Nimbus saw it queued; no runner was started", ev.Job.RunnerName)
	case github.ActionCompleted:
		j.State, j.FinishedAt = store.JobCancelled, now
		j.Reason = fmt.Sprintf("the job completed on GitHub (%s) before Nimbus saw it queued; no runner was started", ev.Job.Conclusion)
	}
	created, ok, err := r.Jobs().Create(ctx, j)
	if err != nil {
		return WebhookResult{}, err
	}
	if !ok {
		// Locked read said absent, insert found it: only possible across
		// replicas racing on the same new key. Treat as an update.
		return s.updateGitHubJob(ctx, r, created, ev, now)
	}
	r.Audit(store.AuditEntry{At: now, OrgID: org.ID, Actor: "github", Action: "job.created", Target: j.ID,
		Detail: map[string]string{"source": store.SourceGitHub, "repository": gh.Repo, "github_job_id": fmt.Sprint(gh.JobID),
			"action": string(ev.Action), "state": string(j.State)}})
	return WebhookResult{Outcome: WebhookCreated, JobID: j.ID, Reason: j.Reason}, nil
}

func (s *Service) updateGitHubJob(ctx context.Context, r *audit.Tx, cur store.Job, ev github.WorkflowJobEvent, now time.Time) (WebhookResult, error) {
	res := WebhookResult{Outcome: WebhookUpdated, JobID: cur.ID}
	if cur.GitHub == nil {
		return res, fmt.Errorf("job %s has a GitHub key but no GitHub data", cur.ID)
	}
	gh := *cur.GitHub
	if mergeGitHub(&gh, ev) {
		if err := r.Jobs().UpdateGitHub(ctx, cur.ID, gh, now); err != nil {
			return res, err
		}
	}
	if cur.State != store.JobQueued {
		return res, nil
	}
	var reason string
	switch ev.Action {
	case github.ActionInProgress:
		owner, err := r.Jobs().FindByRunner(ctx, ev.Job.RunnerName)
		switch {
		case err == nil && owner.ID != cur.ID && owner.GitHub != nil && githubStatusRank[owner.GitHub.Status] == 0:
			res.Reason = fmt.Sprintf("Nimbus's runner for job %s took this job; this job's runner will serve that one", owner.ID)
			return res, nil
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return res, err
		}
		reason = fmt.Sprintf("GitHub gave the job to runner %s before a Nimbus runner started", ev.Job.RunnerName)
	case github.ActionCompleted:
		reason = fmt.Sprintf("the job completed on GitHub (%s) before a Nimbus runner started", ev.Job.Conclusion)
	default:
		return res, nil
	}
	if _, err := r.Jobs().RequestCancel(ctx, cur.OrgID, cur.ID, reason, now); err != nil {
		return res, err
	}
	res.Reason = reason
	r.Audit(store.AuditEntry{At: now, OrgID: cur.OrgID, Actor: "github", Action: "job.cancelled",
		Target: cur.ID, Detail: map[string]string{"reason": reason}})
	return res, nil
}

// mergeGitHub folds a delivery into the recorded GitHub state, moving only
// forward. It reports whether anything changed.
func mergeGitHub(gh *store.GitHubJob, ev github.WorkflowJobEvent) bool {
	before := *gh
	status := string(ev.Action)
	if ev.Action == github.ActionWaiting {
		status = "queued"
	}
	if githubStatusRank[status] > githubStatusRank[gh.Status] {
		gh.Status = status
	}
	if ev.Action == github.ActionCompleted && ev.Job.Conclusion != "" {
		gh.Conclusion = ev.Job.Conclusion
	}
	if ev.Job.RunnerName != "" && (gh.RunnerName == "" || ev.Action == github.ActionInProgress) {
		gh.RunnerName = ev.Job.RunnerName
	}
	if gh.InstallationID == 0 {
		gh.InstallationID = ev.InstallationID
	}
	return *gh != before
}

// poolFor returns the name of the first pool whose labels include all of
// labels, or "".
func (s *Service) poolFor(labels []string) string {
	for _, p := range s.cfg.Pools {
		if subset(labels, p.Labels) {
			return p.Name
		}
	}
	return ""
}

// GitHubRunnerMinter mints JIT runner configs with a GitHub App.
type GitHubRunnerMinter struct {
	App           *github.App
	RunnerGroupID int64
}

// MintRunner implements RunnerMinter.
func (m GitHubRunnerMinter) MintRunner(ctx context.Context, j store.Job, runnerName string) (Runner, error) {
	t, err := runnerTarget(j)
	if err != nil {
		return Runner{}, err
	}
	cfg, err := m.App.GenerateJITConfig(ctx, j.GitHub.InstallationID, t, github.JITRequest{
		Name: runnerName, Labels: j.Labels, RunnerGroupID: m.RunnerGroupID,
	})
	if err != nil {
		if !github.Retryable(err) {
			return Runner{}, permanent(err)
		}
		return Runner{}, err
	}
	if strings.TrimSpace(cfg.EncodedJITConfig) == "" {
		return Runner{}, errors.New("GitHub answered an empty runner config")
	}
	return Runner{ID: cfg.RunnerID, JITConfig: cfg.EncodedJITConfig}, nil
}

// RemoveRunner implements RunnerMinter.
func (m GitHubRunnerMinter) RemoveRunner(ctx context.Context, j store.Job, runnerID int64) error {
	t, err := runnerTarget(j)
	if err != nil {
		return err
	}
	err = m.App.RemoveRunner(ctx, j.GitHub.InstallationID, t, runnerID)
	if errors.Is(err, github.ErrNotFound) {
		return nil // it removed itself after its job
	}
	return err
}

// runnerTarget is where a job's runners are registered: the organization
// for an org-owned repository, else the repository.
func runnerTarget(j store.Job) (github.RunnerTarget, error) {
	gh := j.GitHub
	if gh == nil || gh.InstallationID == 0 {
		return github.RunnerTarget{}, permanent(errors.New("the delivery named no GitHub App installation"))
	}
	if gh.OwnerType == github.AccountOrganization {
		return github.RunnerTarget{Org: gh.OwnerLogin}, nil
	}
	return github.RunnerTarget{Repo: gh.Repo}, nil
}
