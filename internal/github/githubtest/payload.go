package githubtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
)

// WorkflowJobOptions describes a workflow_job delivery. Zero fields take
// realistic defaults.
type WorkflowJobOptions struct {
	Action string // "queued" by default
	JobID  int64  // 29679449 by default
	RunID  int64  // 10741946 by default
	// RunAttempt is 1 by default; OmitRunAttempt leaves the field out, as
	// old payloads did.
	RunAttempt     int64
	OmitRunAttempt bool
	Name           string // "build" by default
	// Labels are the runs-on labels; nil means ["self-hosted", "linux",
	// "x64"], an empty non-nil slice means [].
	Labels []string
	// Status defaults to the status that goes with Action.
	Status string
	// Conclusion defaults to "success" when Action is completed, else null.
	Conclusion string
	// RunnerID and RunnerName default to a runner for in_progress and
	// completed, and null otherwise.
	RunnerID     int64
	RunnerName   string
	HeadSHA      string // a fixed 40-digit sha by default
	HeadBranch   string // "main" by default
	WorkflowName string // "CI" by default

	RepoID    int64  // 186853002 by default
	RepoName  string // "hello-world" by default
	Owner     string // "octo-org" by default
	OwnerID   int64  // 6811672 by default
	OwnerType string // "Organization" by default, or "User"
	Private   bool
	// InstallationID is installation.id; 0 leaves installation out.
	InstallationID int64
}

func (o *WorkflowJobOptions) defaults() {
	setDefault(&o.Action, "queued")
	setDefault(&o.JobID, 29679449)
	setDefault(&o.RunID, 10741946)
	setDefault(&o.RunAttempt, 1)
	setDefault(&o.Name, "build")
	if o.Labels == nil {
		o.Labels = []string{"self-hosted", "linux", "x64"}
	}
	switch o.Action {
	case "waiting", "in_progress", "completed":
		setDefault(&o.Status, o.Action)
	default:
		setDefault(&o.Status, "queued")
	}
	if o.Action == "completed" {
		setDefault(&o.Conclusion, "success")
	}
	if o.Action == "in_progress" || o.Action == "completed" {
		setDefault(&o.RunnerID, 17)
		setDefault(&o.RunnerName, "nimbus-runner-1")
	}
	setDefault(&o.HeadSHA, "6dcb09b5b57875f334f61aebed695e2e4193db5e")
	setDefault(&o.HeadBranch, "main")
	setDefault(&o.WorkflowName, "CI")
	setDefault(&o.RepoID, 186853002)
	setDefault(&o.RepoName, "hello-world")
	setDefault(&o.Owner, "octo-org")
	setDefault(&o.OwnerID, 6811672)
	setDefault(&o.OwnerType, "Organization")
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// WorkflowJobPayload returns the body of a workflow_job delivery in GitHub's
// shape: the fields Nimbus reads and the many it does not (URLs, steps,
// timestamps, sender), so that parsing and benchmarks see realistic input.
func WorkflowJobPayload(o WorkflowJobOptions) []byte {
	o.defaults()
	full := o.Owner + "/" + o.RepoName
	api := "https://api.github.com/repos/" + full
	jobID := strconv.FormatInt(o.JobID, 10)
	runID := strconv.FormatInt(o.RunID, 10)

	type step struct {
		Name        string  `json:"name"`
		Status      string  `json:"status"`
		Conclusion  *string `json:"conclusion"`
		Number      int     `json:"number"`
		StartedAt   *string `json:"started_at"`
		CompletedAt *string `json:"completed_at"`
	}
	var steps []step
	switch o.Action {
	case "in_progress":
		steps = []step{{Name: "Set up job", Status: "in_progress", Number: 1, StartedAt: ptr("2024-05-01T12:00:05Z")}}
	case "completed":
		c := "success"
		steps = []step{
			{Name: "Set up job", Status: "completed", Conclusion: &c, Number: 1, StartedAt: ptr("2024-05-01T12:00:05Z"), CompletedAt: ptr("2024-05-01T12:00:07Z")},
			{Name: "Run make test", Status: "completed", Conclusion: &c, Number: 2, StartedAt: ptr("2024-05-01T12:00:07Z"), CompletedAt: ptr("2024-05-01T12:03:41Z")},
			{Name: "Complete job", Status: "completed", Conclusion: &c, Number: 3, StartedAt: ptr("2024-05-01T12:03:41Z"), CompletedAt: ptr("2024-05-01T12:03:42Z")},
		}
	default:
		steps = []step{}
	}

	job := orderedObject{
		{"id", o.JobID},
		{"run_id", o.RunID},
		{"workflow_name", o.WorkflowName},
		{"head_branch", o.HeadBranch},
		{"run_url", api + "/actions/runs/" + runID},
	}
	if !o.OmitRunAttempt {
		job = append(job, field{"run_attempt", o.RunAttempt})
	}
	job = append(job, orderedObject{
		{"node_id", nodeID("CheckRun", o.JobID)},
		{"head_sha", o.HeadSHA},
		{"url", api + "/actions/jobs/" + jobID},
		{"html_url", "https://github.com/" + full + "/actions/runs/" + runID + "/job/" + jobID},
		{"status", o.Status},
		{"conclusion", nullable(o.Conclusion)},
		{"created_at", "2024-05-01T12:00:00Z"},
		{"started_at", "2024-05-01T12:00:05Z"},
		{"completed_at", nullableIf(o.Action == "completed", "2024-05-01T12:03:42Z")},
		{"name", o.Name},
		{"steps", steps},
		{"check_run_url", api + "/check-runs/" + jobID},
		{"labels", o.Labels},
		{"runner_id", nullableInt(o.RunnerID)},
		{"runner_name", nullable(o.RunnerName)},
		{"runner_group_id", nullableIf(o.RunnerName != "", 1)},
		{"runner_group_name", nullableIf(o.RunnerName != "", "Default")},
	}...)

	owner := accountObject(o.Owner, o.OwnerID, o.OwnerType)
	repo := orderedObject{
		{"id", o.RepoID},
		{"node_id", nodeID("Repository", o.RepoID)},
		{"name", o.RepoName},
		{"full_name", full},
		{"private", o.Private},
		{"owner", owner},
		{"html_url", "https://github.com/" + full},
		{"description", "A repository for testing Nimbus."},
		{"fork", false},
		{"url", api},
	}
	for _, u := range []string{"forks", "keys", "collaborators", "teams", "hooks", "issue_events", "events",
		"assignees", "branches", "tags", "blobs", "git_tags", "git_refs", "trees", "statuses", "languages",
		"stargazers", "contributors", "subscribers", "subscription", "commits", "git_commits", "comments",
		"issue_comment", "contents", "compare", "merges", "archive", "downloads", "issues", "pulls",
		"milestones", "notifications", "labels", "releases", "deployments"} {
		repo = append(repo, field{u + "_url", api + "/" + u})
	}
	repo = append(repo, orderedObject{
		{"created_at", "2019-05-15T15:19:25Z"},
		{"updated_at", "2024-04-30T09:11:02Z"},
		{"pushed_at", "2024-05-01T11:59:58Z"},
		{"git_url", "git://github.com/" + full + ".git"},
		{"ssh_url", "git@github.com:" + full + ".git"},
		{"clone_url", "https://github.com/" + full + ".git"},
		{"homepage", nil},
		{"size", 108},
		{"stargazers_count", 3},
		{"watchers_count", 3},
		{"language", "Go"},
		{"has_issues", true},
		{"has_projects", true},
		{"has_downloads", true},
		{"has_wiki", true},
		{"has_pages", false},
		{"forks_count", 1},
		{"archived", false},
		{"disabled", false},
		{"open_issues_count", 2},
		{"license", nil},
		{"allow_forking", true},
		{"is_template", false},
		{"topics", []string{}},
		{"visibility", visibility(o.Private)},
		{"forks", 1},
		{"open_issues", 2},
		{"watchers", 3},
		{"default_branch", "main"},
	}...)

	ev := orderedObject{
		{"action", o.Action},
		{"workflow_job", job},
		{"repository", repo},
	}
	if o.OwnerType == "Organization" {
		ev = append(ev, field{"organization", orderedObject{
			{"login", o.Owner},
			{"id", o.OwnerID},
			{"node_id", nodeID("Organization", o.OwnerID)},
			{"url", "https://api.github.com/orgs/" + o.Owner},
			{"repos_url", "https://api.github.com/orgs/" + o.Owner + "/repos"},
			{"events_url", "https://api.github.com/orgs/" + o.Owner + "/events"},
			{"hooks_url", "https://api.github.com/orgs/" + o.Owner + "/hooks"},
			{"issues_url", "https://api.github.com/orgs/" + o.Owner + "/issues"},
			{"members_url", "https://api.github.com/orgs/" + o.Owner + "/members{/member}"},
			{"public_members_url", "https://api.github.com/orgs/" + o.Owner + "/public_members{/member}"},
			{"avatar_url", "https://avatars.githubusercontent.com/u/" + strconv.FormatInt(o.OwnerID, 10) + "?v=4"},
			{"description", ""},
		}})
	}
	ev = append(ev, field{"sender", accountObject("octocat", 583231, "User")})
	if o.InstallationID != 0 {
		ev = append(ev, field{"installation", orderedObject{
			{"id", o.InstallationID},
			{"node_id", nodeID("Integration::Installation", o.InstallationID)},
		}})
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(fmt.Sprintf("githubtest: encode payload: %v", err)) // only our own values are encoded
	}
	return b
}

// PingPayload returns the body of a ping delivery for an App's hook.
func PingPayload(hookID, appID int64) []byte {
	b, err := json.Marshal(orderedObject{
		{"zen", "Design for failure."},
		{"hook_id", hookID},
		{"hook", orderedObject{
			{"type", "App"},
			{"id", hookID},
			{"name", "web"},
			{"active", true},
			{"events", []string{"workflow_job"}},
			{"config", orderedObject{{"content_type", "json"}, {"insecure_ssl", "0"}, {"url", "https://nimbus.example.com/webhooks/github"}}},
			{"updated_at", "2024-05-01T12:00:00Z"},
			{"created_at", "2024-05-01T12:00:00Z"},
			{"app_id", appID},
			{"deliveries_url", "https://api.github.com/app/hook/deliveries"},
		}},
	})
	if err != nil {
		panic(fmt.Sprintf("githubtest: encode payload: %v", err))
	}
	return b
}

func accountObject(login string, id int64, typ string) orderedObject {
	u := "https://api.github.com/users/" + login
	return orderedObject{
		{"login", login},
		{"id", id},
		{"node_id", nodeID(typ, id)},
		{"avatar_url", "https://avatars.githubusercontent.com/u/" + strconv.FormatInt(id, 10) + "?v=4"},
		{"gravatar_id", ""},
		{"url", u},
		{"html_url", "https://github.com/" + login},
		{"followers_url", u + "/followers"},
		{"following_url", u + "/following{/other_user}"},
		{"gists_url", u + "/gists{/gist_id}"},
		{"starred_url", u + "/starred{/owner}{/repo}"},
		{"subscriptions_url", u + "/subscriptions"},
		{"organizations_url", u + "/orgs"},
		{"repos_url", u + "/repos"},
		{"events_url", u + "/events{/privacy}"},
		{"received_events_url", u + "/received_events"},
		{"type", typ},
		{"user_view_type", "public"},
		{"site_admin", false},
	}
}

func nodeID(kind string, id int64) string {
	return base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("%02d:%s%d", len(kind), kind, id)))
}

func visibility(private bool) string {
	if private {
		return "private"
	}
	return "public"
}

func ptr[T any](v T) *T { return &v }

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullableInt(n int64) any {
	if n == 0 {
		return nil
	}
	return n
}

func nullableIf(cond bool, v any) any {
	if !cond {
		return nil
	}
	return v
}
