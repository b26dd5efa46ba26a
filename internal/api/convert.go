package api

import (
	"time"

	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/store"
)

func jobJSON(j store.Job) apiv1.Job {
	out := apiv1.Job{
		ID: j.ID, Org: j.OrgID, Source: j.Source, State: string(j.State), Labels: j.Labels, Argv: j.Spec.Argv,
		Env: j.Spec.Env, TimeoutSeconds: int64(j.Spec.Timeout / time.Second), Attempt: j.Attempt,
		MaxAttempts: j.MaxAttempts, Fence: j.Fence, AgentID: j.AgentID, CancelRequested: j.CancelRequested,
		ExitCode: j.ExitCode, Reason: j.Reason, CreatedBy: j.CreatedBy, CreatedAt: j.CreatedAt, NotBefore: j.NotBefore,
		StartedAt: j.StartedAt, FinishedAt: j.FinishedAt,
	}
	if c := j.Spec.Container; c != nil {
		out.Container = &apiv1.Container{Image: c.Image, ReadOnlyRoot: c.ReadOnlyRoot}
	}
	if out.Labels == nil {
		out.Labels = []string{}
	}
	if gh := j.GitHub; gh != nil {
		out.GitHub = &apiv1.GitHubJob{
			Repository: gh.Repo, JobID: gh.JobID, RunID: gh.RunID, RunAttempt: gh.RunAttempt, Name: gh.Name,
			Workflow: gh.WorkflowName, HeadSHA: gh.HeadSHA, HeadBranch: gh.HeadBranch, Status: gh.Status,
			Conclusion: gh.Conclusion, RunnerName: gh.RunnerName, NimbusRunner: j.RunnerName,
		}
	}
	return out
}

func agentJSON(a store.Agent, now time.Time) apiv1.Agent {
	status := "offline"
	switch {
	case !a.DisabledAt.IsZero():
		status = "disabled"
	case now.Sub(a.LastSeenAt) < time.Minute:
		status = "online"
	}
	return apiv1.Agent{
		ID: a.ID, Name: a.Name, Labels: a.Labels, AllowedLabels: a.AllowedLabels, MaxJobs: a.MaxJobs, Hostname: a.Hostname,
		Version: a.Version, CreatedAt: a.CreatedAt, LastSeenAt: a.LastSeenAt, Disabled: !a.DisabledAt.IsZero(), Status: status,
	}
}

func tokenJSON(t store.APIToken) apiv1.Token {
	return apiv1.Token{ID: t.ID, Org: t.OrgID, Name: t.Name, Role: t.Role, CreatedBy: t.CreatedBy, CreatedAt: t.CreatedAt,
		ExpiresAt: t.ExpiresAt, RevokedAt: t.RevokedAt}
}

func orgJSON(o store.Org) apiv1.Org {
	return apiv1.Org{ID: o.ID, Name: o.Name, GitHubLogin: o.GitHubLogin, GitHubID: o.GitHubOwnerID, CreatedAt: o.CreatedAt}
}
